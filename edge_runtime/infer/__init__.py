"""Hierarchical inference with early exits: the board answers a sample from its exit when the
exit is confident, and sends the cut's activation (never the input) to the host otherwise."""
