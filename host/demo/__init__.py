"""The demo: export, serve, edge and a shaped link on one machine, with a final report."""

from host.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
