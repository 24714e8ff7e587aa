"""The hardware-in-the-loop job: a short hierarchical run with the edge on a board, and reports.

The suite itself is pytest under `hw_tests/` (`hostctl hil --board FILE` runs it); this package
holds what the suite drives: `run.py` trains with the edge started on the board through its
BoardAccess, `report.py` collects the figures and writes hil-report.json / hil-report.md.
"""
