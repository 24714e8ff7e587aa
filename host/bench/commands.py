"""`hostctl bench`: placeholder list until the command lands (see host/bench/modes.py)."""

COMMANDS: list = []
