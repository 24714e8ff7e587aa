"""A user model from a file, end to end: export it, then serve it from the whole bundle.

`hostctl serve --bundle DIR` (as the README shows it), `hostctl demo --bundle DIR` and
`hostctl bench --model file.py:factory` each load the whole bundle on the host, where the
tail trainer rebuilds the user model from the source the export bundled. That path once
failed for every user model (`BundleError: path() needs a side`), in the cloud's listener
thread, while the edge waited for a welcome; a zoo model never reached it. Real
subprocesses, real TCP, a few batches per run, for both edge engines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_harness import ENV, edge_cmd, run_edge, start_cloud, wait_until

from edge_runtime.bundle import CODE_DIR, load_bundle

pytestmark = pytest.mark.slow

ENGINES = ("ort", "torch")
# synthetic:160 -> 128 train / 32 test samples: 4 training batches of 32.
DATA, BATCHES = "synthetic:160", 4

USER_MODEL = '''\
"""A small user model: three named blocks, BatchNorm included (what a user's file looks like)."""

from collections import OrderedDict

from torch import nn


def factory(input_shape=(3, 32, 32), num_classes=10):
    channels = input_shape[0]
    return nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(
                nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
            ),
            body=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            classifier=nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes)
            ),
        )
    )
'''


def hostctl(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=ENV,
    )


def write_user_model(directory: Path) -> Path:
    path = directory / "tiny_model.py"
    path.write_text(USER_MODEL)
    return path


@pytest.fixture(scope="module")
def user_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user model exported at split 1; its source file removed once the bundle holds a copy."""
    work = tmp_path_factory.mktemp("user-model")
    source = write_user_model(work)
    out = hostctl(
        "export", "--model", f"{source}:factory", "--split", "1", "--out", "bundle", cwd=work
    )
    assert out.returncode == 0, out.stderr[-3000:]
    bundle = work / "bundle"
    # What serves the run is the bundled copy, not the file the model was exported from.
    source.unlink()
    manifest = load_bundle(bundle).manifest
    assert manifest["model_spec"]["bundled_source"] == f"{CODE_DIR}/{source.name}"
    assert manifest["edge_blocks"] == ["stem"] and manifest["tail_blocks"] == ["body", "classifier"]
    return bundle


@pytest.mark.parametrize("engine", ENGINES)
def test_serve_trains_a_user_model_from_the_whole_bundle(user_bundle, tmp_path, engine) -> None:
    cloud = start_cloud(user_bundle, tmp_path)  # --bundle DIR: the whole bundle, as in README
    try:
        edge = run_edge(
            user_bundle,
            cloud.url,
            tmp_path,
            "--data",
            DATA,
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--engine",
            engine,
        )
        report = cloud.finish()
    finally:
        if cloud.proc.poll() is None:
            cloud.proc.kill()
            cloud.proc.wait()
    assert edge["batches_sent"] == BATCHES
    assert report["batches_trained_cloud"] == BATCHES
    assert cloud.rows() == BATCHES
    assert report["model"].endswith("tiny_model.py:factory")
    # Both reports say the rate each half trained at (export's default: 1e-3, constant).
    for side in (edge, report):
        assert (side["lr"], side["lr_schedule"]) == (1e-3, "constant"), side
    assert edge["lr_last_epoch"] == 1e-3


@pytest.mark.parametrize("engine", ENGINES)
def test_demo_runs_a_user_model_bundle(user_bundle, tmp_path, engine) -> None:
    out = hostctl(
        "demo",
        "--bundle",
        str(user_bundle),
        "--engine",
        engine,
        "--data",
        DATA,
        "--epochs",
        "1",
        "--link",
        "local",
        "--work-dir",
        str(tmp_path / "demo"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["batches_sent"] == report["batches_trained_cloud"] == BATCHES
    assert report["model"].endswith("tiny_model.py:factory")
    assert report["final_accuracy"] is not None


@pytest.mark.parametrize("engine", ENGINES)
def test_bench_runs_every_mode_on_a_user_model_file(tmp_path, engine) -> None:
    source = write_user_model(tmp_path)
    out = hostctl(
        "bench",
        "--model",
        f"{source}:factory",
        "--split",
        "1",
        "--modes",
        "hierarchical,split,cloud,edge",
        "--engine",
        engine,
        "--data",
        DATA,
        "--link",
        "local",
        "--out",
        str(tmp_path / "b"),
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    modes = json.loads((tmp_path / "b" / "bench.json").read_text())["modes"]
    assert set(modes) == {"hierarchical", "split", "cloud", "edge"}
    assert modes["hierarchical"]["batches_trained_cloud"] == BATCHES
    assert modes["split"]["batches_trained_cloud"] == BATCHES
    for mode in modes.values():
        assert mode["final_accuracy"] is not None


def test_demo_runs_where_the_user_keeps_a_models_folder(user_bundle, tmp_path) -> None:
    """A user's project folder often holds its own `models/` (or `host/`) package. `hostctl`
    started the edge as `python -m edge_runtime.cli`, which put the working directory first
    on sys.path, so the user's `models` shadowed ours: the torch engine failed with "cannot
    import name 'EdgeNet' from 'models'". Run from such a folder with the console script, as a
    user does (a `python -m host.cli` here would itself import the user's package)."""
    for name in ("models", "host"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text('"""The user\'s own package."""\n')
    hostctl_script = Path(sys.executable).parent / "hostctl"
    out = subprocess.run(
        [
            str(hostctl_script),
            "demo",
            "--bundle",
            str(user_bundle),
            "--engine",
            "torch",
            "--data",
            DATA,
            "--epochs",
            "1",
            "--link",
            "local",
            "--work-dir",
            "demo",
            "--model-out",
            "model",
            "--infer",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env=ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["batches_sent"] == report["batches_trained_cloud"] == BATCHES
    assert (tmp_path / "model" / "model.json").is_file()
    assert "inference:" in out.stdout


def test_a_package_model_from_the_working_directory_travels_in_the_bundle(tmp_path) -> None:
    """`package.module:factory` found in the working directory (not installed): its package goes
    into the bundle's code/ as a file model's folder does. It did not, so the bundle worked only
    where that directory was the working directory: serve elsewhere failed with "No module
    named 'mypkg'" (the host rebuilds the tail), as did the torch engine on a board."""
    project = tmp_path / "project"
    (project / "mypkg" / "nets").mkdir(parents=True)
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "nets" / "__init__.py").write_text("")
    (project / "mypkg" / "nets" / "tiny.py").write_text(USER_MODEL)
    out = hostctl("export", "--model", "mypkg.nets.tiny:factory", "--split", "1", "--out",
                  str(tmp_path / "bundle"), cwd=project)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    shutil.rmtree(project)  # what runs is the bundled copy
    manifest = load_bundle(tmp_path / "bundle").manifest
    assert "mypkg" in manifest["code"]["files"]
    out = hostctl(
        "demo", "--bundle", str(tmp_path / "bundle"), "--engine", "torch", "--data", DATA,
        "--epochs", "1", "--link", "local", "--work-dir", str(tmp_path / "demo"),
        "--model-out", str(tmp_path / "model"), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["batches_sent"] == report["batches_trained_cloud"] == BATCHES
    assert (tmp_path / "model" / "code" / "mypkg" / "nets" / "tiny.py").is_file()


FAILING_TAIL = '''\
"""A user model whose tail fails in training after a few batches (a bug in the user's code)."""

from torch import nn

TRAINED = [0]  # training forwards of the tail in this process


class Fragile(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        if self.training and x.shape[0] > 1:
            TRAINED[0] += 1
            if TRAINED[0] > 3:
                raise RuntimeError("the user's tail broke after 3 batches")
        return self.fc(x.mean((2, 3)))


def factory(input_shape=(3, 32, 32), num_classes=10):
    return nn.Sequential(nn.Conv2d(input_shape[0], 8, 3, padding=1), Fragile(num_classes))
'''


@pytest.fixture(scope="module")
def fragile_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user model whose tail raises at its fourth training batch, exported at split 1."""
    work = tmp_path_factory.mktemp("fragile")
    (work / "fragile.py").write_text(FAILING_TAIL)
    out = hostctl("export", "--model", "fragile.py:factory", "--split", "1", "--out", "b",
                  cwd=work)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return work / "b"


def test_a_tail_that_fails_in_training_stops_both_sides_in_one_line(
    fragile_bundle, tmp_path
) -> None:
    """Something no check foresaw failing in the host's session (the user's tail raising in
    training) killed the session's thread with a traceback in the host's log; the edge waited
    on acks, then reconnected for 60 s to nobody. The host now sends a final ERROR and stops;
    the edge ends on it at once. The edge keeps streaming batches meanwhile, so the host's
    receive buffer holds unread data when it stops: closing the socket plainly then sent RST,
    which destroyed the ERROR in flight."""
    cloud = start_cloud(fragile_bundle, tmp_path)
    try:
        # 75 batches of 32: many more than the tail trains before it fails, so the edge is
        # still sending (its window full) when the host stops. Without the ERROR the edge
        # ends after its 60 s reconnect budget with "gave up", not with the host's line.
        edge = subprocess.run(
            edge_cmd(fragile_bundle, cloud.url, tmp_path, "--data", "synthetic:3000",
                     "--epochs", "1", "--batch-size", "32"),
            capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path,
        )  # fmt: skip
        assert cloud.proc.wait(60) == 1, cloud.log.read_text()[-3000:]
    finally:
        if cloud.proc.poll() is None:
            cloud.proc.kill()
            cloud.proc.wait()
    assert edge.returncode == 1, edge.stderr[-2000:]
    last = edge.stderr.strip().splitlines()[-1]
    assert "the host stopped" in last and "the user's tail broke after 3 batches" in last, last
    assert "Traceback" not in edge.stderr
    log = cloud.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "the user's tail broke after 3 batches" in log.strip().splitlines()[-1], log[-2000:]


def test_a_tail_that_fails_in_the_demo_ends_it_with_the_hosts_words(
    fragile_bundle, tmp_path
) -> None:
    """The demo's host is in-process: its failure was "the edge runtime exited with 1"."""
    out = hostctl("demo", "--bundle", str(fragile_bundle), "--data", "synthetic:3000",
                  "--epochs", "1", "--link", "local", "--work-dir", "demo", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 1, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last == "hostctl: failed: RuntimeError: the user's tail broke after 3 batches", last
    assert "Traceback" not in out.stderr + out.stdout


MARKED_TAIL = '''\
"""A user model whose tail fails once, in the training step that finds the test's marker."""

from pathlib import Path

from torch import nn

MARKER = Path({marker!r})


class Fragile(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        if self.training:
            try:
                MARKER.unlink()  # one session only takes it: the other edge's session is fine
            except FileNotFoundError:
                pass
            else:
                raise RuntimeError("the user's tail broke on the marker")
        return self.fc(x.mean((2, 3)))


def factory(input_shape=(3, 32, 32), num_classes=10):
    return nn.Sequential(nn.Conv2d(input_shape[0], 8, 3, padding=1), Fragile(num_classes))
'''


def test_a_tail_that_fails_ends_every_edge_of_the_host_in_its_words(tmp_path) -> None:
    """Two edges on one host; one edge's batch makes the tail fail (once). The host stops, and
    the other edge, whose own session was fine, ends on the host's line too: it reconnected for
    60 s to nobody. The tail fails only once both edges are in, so the test has no race."""
    marker = tmp_path / "break-now"
    (tmp_path / "marked.py").write_text(MARKED_TAIL.format(marker=str(marker)))
    out = hostctl("export", "--model", "marked.py:factory", "--split", "1", "--out", "b",
                  cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    cloud = start_cloud(tmp_path / "b", tmp_path)
    edges = {}
    try:
        for k in range(2):
            work = tmp_path / f"board{k}"
            work.mkdir()
            cmd = edge_cmd(tmp_path / "b", cloud.url, work, "--data", "synthetic:6000",
                           "--epochs", "1", "--slowdown", "3", "--edge-id", f"board{k}")  # fmt: skip
            edges[k] = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
                cwd=work,
            )  # fmt: skip
        wait_until(
            lambda: all(f"edge 'board{k}' connected" in cloud.log.read_text() for k in edges),
            240, "both edges connected",
        )  # fmt: skip
        marker.touch()
        errs = {k: proc.communicate(timeout=300)[1] for k, proc in edges.items()}
        assert cloud.proc.wait(60) == 1, cloud.log.read_text()[-3000:]
    finally:
        for proc in [*edges.values(), cloud.proc]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for k, proc in edges.items():
        assert proc.returncode == 1, errs[k][-2000:]
        last = errs[k].strip().splitlines()[-1]
        assert "the host stopped" in last and "the user's tail broke on the marker" in last, last
    log = cloud.log.read_text()
    assert "Traceback" not in log, log[-3000:]


WIDE_CUT = """\
from collections import OrderedDict

from torch import nn


def factory(input_shape=(3, 64, 64), num_classes=10):
    # A wide cut: 64x64x64 float32 is 1 MiB a sample, so 16 fill the link's 16 MiB message.
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(input_shape[0], 64, 3, padding=1), nn.ReLU()),
        classifier=nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)
        ),
    ))
"""


@pytest.fixture(scope="module")
def wide_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wide")
    (work / "wide.py").write_text(WIDE_CUT)
    out = hostctl(
        "export", "--model", "wide.py:factory", "--split", "1", "--input-shape", "3x64x64",
        "--no-validate", "--out", "bundle", cwd=work,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return work / "bundle"


WIDE_DATA = ["--data", "synthetic:80:64", "--epochs", "1", "--engine", "ort"]


def test_batches_too_wide_for_the_link_are_refused_at_once_and_eval_batches_shrink(
    wide_bundle, tmp_path
) -> None:
    """A training batch whose activations exceed the link's largest message is a usage error
    before anything is sent; evaluation batches shrink to fit (an edge used to train a whole
    epoch, then fail on its first 128-sample evaluation batch)."""
    bundle = wide_bundle
    refused = subprocess.run(
        edge_cmd(bundle, "socket://127.0.0.1:9", tmp_path, *WIDE_DATA, "--batch-size", "32"),
        capture_output=True, text=True, timeout=120, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert "--batch-size 32: a batch's activations (32 x 64x64x64, 32.0 MiB" in line
    assert "use --batch-size 15 or less" in line and "Traceback" not in refused.stderr
    assert "cannot reach the host" not in refused.stderr  # refused before connecting

    cloud = start_cloud(bundle, tmp_path)
    try:
        edge = run_edge(bundle, cloud.url, tmp_path, *WIDE_DATA, "--batch-size", "8")
        report = cloud.finish()
    finally:
        if cloud.proc.poll() is None:
            cloud.proc.kill()
            cloud.proc.wait()
    # 64 training samples in 8 batches; the 16 held out evaluated (default 128 a batch: 15).
    assert edge["batches_sent"] == report["batches_trained_cloud"] == 8
    assert report["final_accuracy"] is not None and edge["edge_exit_accuracy"] is not None


def test_a_host_that_takes_smaller_messages_is_fitted_to_as_well(wide_bundle, tmp_path) -> None:
    """The host's WELCOME may name a smaller largest message than the edge's own: a training
    batch past it is refused right after the handshake, evaluation fits it."""
    from edge_runtime.bundle import load_bundle as load
    from edge_runtime.link import LinkConfig
    from host.cloud.server import CloudServer

    bundle = load(wide_bundle)
    server = CloudServer(
        bundle, tmp_path / "state", key=bundle.key(), config=LinkConfig(max_frame=3 * 2**20)
    )
    host, port = server.serve_tcp("127.0.0.1", 0)
    url = f"socket://{host}:{port}"
    try:
        refused = subprocess.run(
            edge_cmd(wide_bundle, url, tmp_path, *WIDE_DATA, "--batch-size", "8", tag="big"),
            capture_output=True, text=True, timeout=120, env=ENV, cwd=tmp_path,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr[-2000:]
        line = refused.stderr.strip().splitlines()[-1]
        assert "largest message (3 MiB); use --batch-size 2 or less" in line, line
        # The edge ends 0 once the host has trained everything it sent.
        edge = run_edge(wide_bundle, url, tmp_path, *WIDE_DATA, "--batch-size", "2", "--fresh")
    finally:
        server.stop()
    # 64 training samples in 32 batches of 2; the 16 held out in evaluation batches of 2.
    assert edge["batches_sent"] == 32
    assert server.report(url)["batches_trained_cloud"] == 32
