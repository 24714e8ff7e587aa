"""The root of hiertrain's typed errors, and what each kind means to a command line.

Every error a user can act on derives from ``HiertrainError``; its class says how a CLI ends
on it (``exit_code``) and how the one line it prints starts (``label``). Lives in edge_runtime
because the board's CLI needs it and edge_runtime never imports host; host imports it from here.
Imports nothing, so the link and the data layer can derive their errors from it.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class HiertrainError(Exception):
    """A runtime failure the message explains (a bad file, a refused link, a failed step).

    Raise it, or a subclass, with a message that names the cause; the CLIs print
    ``<prog>: failed: <message>`` and exit 1.
    """

    exit_code: ClassVar[int] = EXIT_FAILED
    label: ClassVar[str] = "failed"


class UsageFault(HiertrainError):
    """The user asked for something that cannot work: the message says what is valid; exit 2."""

    exit_code: ClassVar[int] = EXIT_USAGE
    label: ClassVar[str] = "error"


class Interrupted(HiertrainError):
    """A run stopped by the user (Ctrl-C); ``resume`` says how to continue it, if it can be."""

    exit_code: ClassVar[int] = EXIT_INTERRUPTED
    label: ClassVar[str] = "interrupted"

    def __init__(self, resume: str | None = None) -> None:
        super().__init__(resume or "")
        self.resume = resume
