"""`hostctl doctor`: what the host has, and whether it reaches a board."""
