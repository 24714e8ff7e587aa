"""A Ctrl-C while a CLI is still importing is one line and exit 130, never a traceback.

Both console scripts imported their CLI module (click, rich, the package) before run_cli could
catch a Ctrl-C, so one in the first second printed a KeyboardInterrupt traceback from inside
an import. They now start through edge_runtime.launch, which imports the CLI under a try.
Real processes, real SIGINT.
"""

from __future__ import annotations

import importlib.metadata
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = {
    "hostctl": "host.launch:hostctl_main",
    "edge-runtime": "edge_runtime.launch:edge_runtime_main",
}


def test_the_console_scripts_start_through_the_launcher() -> None:
    found = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    for name, target in SCRIPTS.items():
        assert found.get(name) == target, f"{name}: reinstall (make .venv/.installed)"


def test_ctrl_c_during_the_cli_import_is_one_line(tmp_path: Path) -> None:
    """A CLI module whose import blocks (as torch's or rich's can on a slow board) gets SIGINT
    while importing: exit 130 and the one line."""
    (tmp_path / "slow_cli.py").write_text(
        "import sys, time\nprint('importing', flush=True)\ntime.sleep(60)\n"
        "def main():\n    sys.exit(0)\n"
    )
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
        "from edge_runtime.launch import start; start('slow', 'slow_cli')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "importing"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err == "slow: interrupted\n"


def test_ctrl_c_as_the_real_scripts_start() -> None:
    """SIGINT at several moments of each script's start-up (its imports take about a second
    here): whatever it hits, no traceback, and an interruption is exit 130."""
    bin_dir = Path(sys.executable).parent
    for name, args in (
        ("hostctl", ["inspect", "--model", "smallcnn"]),
        ("edge-runtime", ["--help"]),
    ):
        for delay in (0.15, 0.3, 0.5):
            proc = subprocess.Popen(
                [str(bin_dir / name), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert "Traceback" not in err and "KeyboardInterrupt" not in err, (name, delay, err)
            # 0: it was done; -2: the signal came before Python set its handler.
            assert proc.returncode in (0, 130, -signal.SIGINT), (name, delay, err)
