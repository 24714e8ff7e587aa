"""What hostctl and edge-runtime share: one mapping from errors to exit codes, one line each.

Commands raise typed errors (``edge_runtime.errors``) and never choose an exit code;
``CommandGroup`` turns whatever reaches it into one line ``<prog>: <label>: <message>`` and the
code of its kind (usage 2, failure 1, interrupted 130), and ``run_cli`` is both programs' entry
point. Set HIERTRAIN_TRACEBACK=1 to see the traceback of an unexpected error instead.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from edge_runtime.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    HiertrainError,
    Interrupted,
    UsageFault,
)

TRACEBACK_ENV = "HIERTRAIN_TRACEBACK"
# click >= 8.2 raises this for a group run without a command; its message is the whole help.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
DISTRIBUTION = "hiertrain"  # --version reads the installed distribution's metadata

# Typed errors of packages that cannot derive from HiertrainError (models/ imports neither host
# nor edge_runtime) and that a CLI must not import at start-up (models pulls in torch). Named,
# and looked up in sys.modules: an error whose module was never imported cannot have been raised.
FOREIGN_ERRORS: dict[tuple[str, str], type[HiertrainError]] = {
    ("models.errors", "ModelSpecError"): UsageFault,
    # Saved weights or a manifest that cannot be rebuilt: the message names the file and why.
    ("models.errors", "ManifestError"): HiertrainError,
}


def classify(exc: Exception) -> tuple[int, str, str]:
    """(exit code, label, message) of an error that reached a command line: the one mapping."""
    if isinstance(exc, HiertrainError):
        return exc.exit_code, exc.label, str(exc)
    for (module, name), kind in FOREIGN_ERRORS.items():
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return kind.exit_code, kind.label, str(exc)
    if isinstance(exc, OSError):  # a file, a port, a device: the message names it
        return EXIT_FAILED, HiertrainError.label, str(exc)
    # Not a typed error: still one line, with the type, since the message alone may be cryptic.
    return (
        EXIT_FAILED,
        HiertrainError.label,
        f"{type(exc).__name__}: {exc} ({TRACEBACK_ENV}=1 shows where)",
    )


class _CtrlC:
    """SIGINT as Python's default handler takes it (KeyboardInterrupt), but remembered.

    A Ctrl-C that lands inside a C extension's import does not arrive as KeyboardInterrupt:
    onnxruntime's module init turns it into "ImportError: initialization failed". Any error
    that follows a Ctrl-C is that interruption, and ``CommandGroup`` says so (exit 130).
    """

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:  # noqa: ARG003 - signal's signature
        """Record the Ctrl-C, then interrupt as the default handler does."""
        cls.seen = True
        raise KeyboardInterrupt

    @classmethod
    def install(cls) -> None:
        """Take SIGINT where Python's default handler has it (not where a caller set one)."""
        cls.seen = False
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, cls.handler)


class Fault(click.ClickException):
    """An error on its way out of a command: prints its one line, exits with its code."""

    def __init__(self, prog: str, exit_code: int, label: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.exit_code, self.label = prog, exit_code, label

    def format_message(self) -> str:
        """The line without the program's name."""
        return f"{self.label}: {self.message}" if self.message else self.label

    def show(self, file: Any = None) -> None:  # noqa: ARG002 - click's signature; always stderr
        click.echo(f"{self.prog}: {self.format_message()}", err=True)


class CommandGroup(click.Group):
    """A click group whose commands raise typed errors; it maps them to a Fault.

    Mapping here rather than in ``run_cli`` means click's test runner sees the same exit codes
    and lines as a user does.
    """

    def __init__(self, *args: Any, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(*args, **kwargs)
        self.prog = prog

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; any exception but click's own and the interpreter's becomes a Fault."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if os.environ.get(TRACEBACK_ENV):
                raise
            if _CtrlC.seen and not isinstance(exc, HiertrainError):
                # An untyped failure after a Ctrl-C is the Ctrl-C's doing (see _CtrlC); a
                # typed one (Interrupted with how to resume, say) says more than that.
                raise click.exceptions.Abort from None
            raise Fault(self.prog, *classify(exc)) from None


def version_option(prog: str) -> Callable[[Callable], Callable]:
    """``--version``: the installed distribution's version, read only when asked."""
    return click.version_option(
        package_name=DISTRIBUTION, prog_name=prog, message="%(prog)s %(version)s"
    )


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A record logged with extra={PROGRESS: True} repeats what a terminal's progress bar shows:
# terminals drop it (the bar is there), files and pipes keep it (nothing else is).
PROGRESS = "progress"


class _NotProgress(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, PROGRESS, False)


def report_option(help: str = "write the run's JSON report here") -> Callable:  # noqa: A002
    """``--report PATH``: the run's JSON report (both CLIs)."""
    return click.option(
        "--report", "report_path", type=click.Path(path_type=Path), default=None, help=help
    )


def configure_logging(*, log_file: Path | None = None, verbosity: int = 0) -> None:
    """The one logger setup of a program: timestamped lines on stderr and in ``log_file``.

    ``verbosity`` -1 (--quiet) shows warnings only, 0 progress and events, 1 (-v) debug. On a
    terminal the lines go through rich (the progress bars stay); elsewhere (nohup, a redirect,
    systemd) every line carries its time, progress lines included.
    """
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handlers: list[logging.Handler] = []
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        # stderr, as the progress bars: stdout carries results (tables, "listening on").
        tty = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
        tty.setFormatter(logging.Formatter("%(message)s"))  # rich adds time and level
        tty.addFilter(_NotProgress())
        handlers.append(tty)
    else:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(plain)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(to_file)
    # force: a second command in one process (tests, click's runner) replaces the handlers.
    # Our loggers ("hiertrain.*") log at the chosen level; other libraries at warnings unless
    # -v (torch logs its FakeTensor cache stats at INFO when the process exits).
    root_level = level if verbosity >= 1 else max(level, logging.WARNING)
    logging.basicConfig(level=root_level, handlers=handlers, force=True)
    logging.getLogger("hiertrain").setLevel(level)


def logging_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-file``, ``-q/--quiet``, ``-v/--verbose`` and ``--progress-every`` for a
    long-running command; configures logging before the command runs."""

    @click.option(
        "--log-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="also write timestamped log lines here",
    )
    @click.option("-q", "--quiet", is_flag=True, help="warnings and errors only")
    @click.option("-v", "--verbose", is_flag=True, help="debug lines too")
    @click.option(
        "--progress-every",
        type=click.FloatRange(min=0.0),
        default=10.0,
        show_default=True,
        help="seconds between progress lines when not on a terminal",
    )
    @functools.wraps(command)
    def with_logging(
        *args: Any,
        log_file: Path | None,
        quiet: bool,
        verbose: bool,
        progress_every: float,
        **kwargs: Any,
    ) -> Any:
        if quiet and verbose:
            raise UsageFault("give at most one of --quiet and --verbose")
        configure_logging(log_file=log_file, verbosity=-1 if quiet else int(verbose))
        Throttle.default_every = progress_every
        return command(*args, **kwargs)

    return with_logging


class Throttle:
    """Says when the next progress line is due: every ``every`` seconds, and when forced."""

    default_every = 10.0  # set by --progress-every

    def __init__(self, every: float | None = None) -> None:
        self.every = Throttle.default_every if every is None else every
        self._last: dict[object, float] = {}

    def due(self, key: object = None, *, force: bool = False) -> bool:
        """True (and the clock restarts) if a line for ``key`` is due now."""
        now = time.monotonic()
        last = self._last.get(key)
        if force or last is None or now - last >= self.every:
            self._last[key] = now
            return True
        return False


def one_line(prog: str, exc: click.ClickException) -> str:
    """click's own errors (a missing option, a bad value) as one line, like ours."""
    if isinstance(exc, Fault):
        return f"{prog}: {exc.format_message()}"
    label = UsageFault.label if exc.exit_code == EXIT_USAGE else HiertrainError.label
    line = f"{prog}: {label}: {exc.format_message()}"
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        line += f" (see {ctx.command_path} --help)"
    return line


def own_module_argv(module: str) -> list[str]:
    """argv that runs one of this project's modules (``python -m module``) in this interpreter.

    ``-P`` keeps the working directory off sys.path: ``-m`` alone puts it first, and a user's
    project folder often holds its own ``models/`` or ``host/`` package, which then shadowed
    ours in the child ("cannot import name 'EdgeNet' from 'models'"). A console script never
    has the working directory there either, so the child sees what ``hostctl`` saw. In our own
    source tree (run there uninstalled) the working directory is how the child finds us.
    """
    return [sys.executable, *python_safe_path(), "-m", module]


def python_safe_path() -> list[str]:
    """``["-P"]`` unless the working directory is this project's source root (see
    own_module_argv); ``[]`` there."""
    source_root = Path(__file__).resolve().parents[1]
    return [] if Path.cwd().resolve() == source_root else ["-P"]


def run_cli(group: CommandGroup, args: Sequence[str] | None = None) -> NoReturn:
    """Entry point of a CLI: run the group, end with one line and the exit code of its kind.

    It ends the process: on Ctrl-C it ignores SIGINT from then on (a caller that runs it in a
    process that goes on must put the handler back)."""
    prog = group.prog
    _CtrlC.install()
    try:
        # Without standalone mode click raises instead of printing; ctx.exit(n) returns n.
        code = group.main(args=args, prog_name=prog, standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        # Already on the way out: a second SIGINT (the group's Ctrl-C and then the parent's
        # own, as `hostctl demo` sends it) must not turn exit 130 into death by signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        click.echo(one_line(prog, Fault(prog, *classify(Interrupted()))), err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        if isinstance(exc, NO_ARGS_IS_HELP):  # the program alone: its help, as click shows it
            exc.show()
        else:
            click.echo(one_line(prog, exc), err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
