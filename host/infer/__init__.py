"""The host's side of hierarchical inference: the tail answers what the edge offloads."""
