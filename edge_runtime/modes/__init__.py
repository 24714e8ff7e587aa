"""The training modes, one module each, chosen by name from one registry.

A mode says what the edge trains, what it sends and what it scores (its edge half, here) and
what the host does with what arrives (its host half, `host/cloud/modes`). The session plumbing
(link, spool, checkpoints, acks, reports) lives in `EdgeTrainer` and `CloudServer` and never
asks which mode it runs: it asks the mode's spec and calls the mode's half.

- hierarchical: ours. The edge trains front + exit on its own loss and streams activations.
- split: split learning, the baseline. The activation's gradient comes back; the edge waits.
- cloud: the raw training set goes up once; the host trains the whole network.
- edge: the board trains the whole network alone; no link.
"""

from __future__ import annotations

import importlib

from edge_runtime.errors import UsageFault
from edge_runtime.modes.spec import ModeSpec

# Import paths, not modules: listing the modes imports nothing of what they run.
_MODULES = ("hierarchical", "split", "cloud", "edge")


def _load() -> dict[str, ModeSpec]:
    specs = [importlib.import_module(f"edge_runtime.modes.{m}").SPEC for m in _MODULES]
    return {s.name: s for s in specs}


MODES: dict[str, ModeSpec] = _load()
MODE_NAMES: tuple[str, ...] = tuple(MODES)
LINK_MODE_NAMES: tuple[str, ...] = tuple(n for n, s in MODES.items() if s.needs_link)


class UnknownMode(UsageFault, ValueError):
    """A mode name that is not registered."""


def mode_spec(name: str) -> ModeSpec:
    """The spec of mode `name`; UnknownMode names the valid ones."""
    try:
        return MODES[name]
    except KeyError:
        raise UnknownMode(f"unknown mode {name!r}: choose from {', '.join(MODE_NAMES)}") from None


def parse_modes(text: str) -> tuple[str, ...]:
    """A comma-separated list of mode names (`hostctl bench --modes`), validated."""
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    if not chosen:
        raise UnknownMode(f"no mode given: choose from {', '.join(MODE_NAMES)}")
    for name in chosen:
        mode_spec(name)
    return chosen


__all__ = [
    "LINK_MODE_NAMES",
    "MODES",
    "MODE_NAMES",
    "ModeSpec",
    "UnknownMode",
    "mode_spec",
    "parse_modes",
]
