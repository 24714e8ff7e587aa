"""The cloud side: the tail trainer and the server that feeds it from the link."""
