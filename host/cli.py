"""hostctl: the host's command line. Thin: each job's subpackage owns its commands.

A job's `commands.py` holds its click commands and lists them in COMMANDS; this module only
registers them. Commands raise typed errors (edge_runtime.errors); the group maps every one to
a line and an exit code (edge_runtime/command_line.py). The command modules import torch only
inside their commands, so `hostctl --help` does not.
"""

from __future__ import annotations

import importlib

import click

from edge_runtime.command_line import CommandGroup, run_cli, version_option

PROG = "hostctl"

# The jobs with commands. A new job adds a line.
JOB_COMMANDS = (
    "host.export.commands",  # export, inspect
    "host.cloud.commands",  # serve
    "host.demo.commands",  # demo
    "host.bench.commands",  # bench
    "host.plan.commands",  # plan
    "host.deploy.commands",  # bundle, deploy
    "host.hil.commands",  # hil
    "host.keys.commands",  # key issue, key revoke
    "host.model.commands",  # model
    "host.privacy.commands",  # privacy audit, privacy epsilon
    "host.report.commands",  # report
    "host.doctor.commands",  # doctor
)


@click.group(cls=CommandGroup, prog=PROG)
@version_option(PROG)
def cli() -> None:
    """Hierarchical training with early exits: export, serve, demo, bench, deploy."""


for _module in JOB_COMMANDS:
    for _command in importlib.import_module(_module).COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Entry point: typed errors become one line and an exit code, never a traceback."""
    run_cli(cli)


if __name__ == "__main__":
    main()
