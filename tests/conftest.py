"""Fixtures shared across the suite: exported bundles (made once per session) and data paths."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DIGITS = REPO.parent / "shared" / "data" / "digits.csv.gz"


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`exported("smallcnn", 2, input_shape=(3, 32, 32))` -> bundle dir, exported once per session."""
    from host.export import ExportOptions, export_bundle

    cache: dict[tuple, Path] = {}

    def make(model: str, split: int, **kwargs) -> Path:
        key = (model, split, tuple(sorted(kwargs.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"bundle-{Path(model).stem}-{split}")
            export_bundle(ExportOptions(model=model, split=split, **kwargs), out)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def digits_path() -> Path:
    """The real UCI digits in ../shared/data; tests that need it skip when it is absent."""
    if not SHARED_DIGITS.is_file():
        pytest.skip(f"{SHARED_DIGITS} is absent (a fresh clone has no ../shared/data)")
    return SHARED_DIGITS


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 - pytest's signature
    """Tests that Ctrl-C a child need a SIGINT the child can receive. A shell starts a
    background job (`make test &`, a CI runner without job control) with SIGINT ignored, and an
    ignored SIGINT survives exec into every process a test starts: those tests then saw their
    Ctrl-C ignored. A terminal's SIGINT is the default one; the suite runs with that."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def sigint_kept() -> Iterator[None]:
    """No test leaves its process ignoring SIGINT. An ignored SIGINT survives exec, so every
    process the worker starts afterwards (a demo or a CLI a later test interrupts) would ignore
    Ctrl-C too: such a test fails here, naming itself, and the handler is put back."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is signal.SIG_IGN and before is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, before)
        pytest.fail("this test left the process ignoring SIGINT (run_cli does on Ctrl-C)")
