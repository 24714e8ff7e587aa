"""Board profiles for the plan: step times per split, saved as JSON and read back.

Format (``hiertrain-plan-profile/1``; every key but ``splits[].split`` is optional)::

    {
      "format": "hiertrain-plan-profile/1",
      "model": "resnet18",            # refused if it is not the planned model
      "batch_size": 32,               # refused if it is not the planned batch size
      "eval_batch_size": 128,
      "engine": "ort",
      "measured_on": "x86_64, 2 cores",
      "source": "where the figures come from",
      "slowdown": 1.0,                # multiplies edge times measured on THIS machine
      "splits": [
        {"split": 4, "edge_step_s": 0.41, "edge_eval_s": 0.52, "edge_warmup_s": 0.05,
         "cloud_step_s": 0.09, "cloud_eval_s": 0.05, "cloud_warmup_s": 0.02}
      ]
    }

Codec figures, per split and codec (optional; ``hostctl plan`` measures them on the edge's own
activation at the split): ``"codec:fp32+z:ratio"`` (the coded tensor's bytes over fp32's),
``"codec:fp32+z:encode_s"`` (the edge's coding time per training batch, an edge figure) and
``"codec:fp32+z:decode_s"`` (the host's decoding time, a cloud figure).

Seconds are per batch (``batch_size`` for steps, ``eval_batch_size`` for evals). A board
profile may give only ``edge_step_s`` per split (measured on the board), or no splits at all and
only ``slowdown`` (a file like host/bench/profiles/rpi4.json). Whatever a file leaves out is
measured here: edge figures scaled by the file's edge step over this machine's (or by
``slowdown``), cloud figures as measured (the host is this machine). ``--save-profile`` writes
every field, so reading it back measures nothing.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.errors import UsageFault

FORMAT = "hiertrain-plan-profile/1"
EDGE_FIELDS = ("edge_step_s", "edge_eval_s", "edge_warmup_s")
CLOUD_FIELDS = ("cloud_step_s", "cloud_eval_s", "cloud_warmup_s")
STEP_FIELDS = EDGE_FIELDS + CLOUD_FIELDS
CODEC_FIGURES = ("ratio", "encode_s", "decode_s")


def codec_key(codec: str, figure: str) -> str:
    """The key of one codec figure in a split's figures: ``codec:<name>:<figure>``."""
    return f"codec:{codec}:{figure}"


def is_edge_figure(key: str) -> bool:
    """Edge figures scale with the board's speed; the rest are the host's or bytes."""
    return key in EDGE_FIELDS or key.endswith(":encode_s")


class ProfileError(UsageFault, ValueError):
    """A profile file that cannot be read or does not fit the plan; says what to fix."""


@dataclass
class BoardProfile:
    """Step times per split (``splits[n]`` maps field -> seconds) and where they come from."""

    model: str | None = None
    batch_size: int | None = None
    eval_batch_size: int | None = None
    engine: str | None = None
    slowdown: float = 1.0
    source: str = ""
    measured_on: str = ""
    splits: dict[int, dict[str, float]] = field(default_factory=dict)

    def complete(self, split: int, extra: tuple[str, ...] = ()) -> bool:
        """Whether the profile has every figure of ``split`` and ``extra`` (codec figures)."""
        return all(k in self.splits.get(split, {}) for k in STEP_FIELDS + extra)

    def check_fits(self, model: str, batch_size: int, eval_batch_size: int) -> None:
        """Refuse a profile measured for another model or batch size."""
        for key, want in (
            ("model", model),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
        ):
            have = getattr(self, key)
            if have is not None and have != want:
                raise ProfileError(
                    f"the profile was measured with {key} {have}, the plan asks for {want}: "
                    f"plan with --{key.replace('_', '-')} {have} or profile again"
                )


def this_machine() -> str:
    """A short description of where figures measured here come from."""
    import os

    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, {platform.node()}"


def save_profile(profile: BoardProfile, path: Path) -> None:
    """Write ``profile`` as JSON (see the module doc)."""
    data: dict[str, Any] = {"format": FORMAT, **asdict(profile)}
    data["splits"] = [{"split": n, **figures} for n, figures in sorted(profile.splits.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def load_profile(path: Path) -> BoardProfile:
    """Read a profile; ProfileError names the file and what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ProfileError(f"--profile {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"--profile {path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"--profile {path}: expected a JSON object")
    if data.get("format", FORMAT) != FORMAT:
        raise ProfileError(f"--profile {path}: format {data['format']!r}, expected {FORMAT!r}")
    slowdown = _number(path, "slowdown", data.get("slowdown", 1.0))
    if slowdown < 1:
        raise ProfileError(f"--profile {path}: slowdown {slowdown} is below 1")
    splits: dict[int, dict[str, float]] = {}
    for entry in data.get("splits") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("split"), int):
            raise ProfileError(f"--profile {path}: each of splits needs an integer 'split'")
        splits[entry["split"]] = {
            k: _number(path, f"split {entry['split']} {k}", entry[k])
            for k in entry
            if k in STEP_FIELDS or k.startswith("codec:")
        }
    return BoardProfile(
        model=data.get("model"),
        batch_size=data.get("batch_size"),
        eval_batch_size=data.get("eval_batch_size"),
        engine=data.get("engine"),
        slowdown=slowdown,
        source=str(data.get("source", "")),
        measured_on=str(data.get("measured_on", "")),
        splits=splits,
    )


def _number(path: Path, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProfileError(f"--profile {path}: {what} must be a number, got {value!r}")
    if value < 0:
        raise ProfileError(f"--profile {path}: {what} must not be negative, got {value}")
    return float(value)
