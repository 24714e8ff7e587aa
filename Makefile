# make demo: the main job on an embedded default. make test: the test suite.
# Both create .venv and install what they need on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: the pinned version resolves to the local CPU wheel.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[host,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hostctl demo

# The torch.distributed ranks tests (tests/fleet/test_ranks.py and test_nodes.py: torchrun,
# gloo ranks on one or two "nodes" and four edge processes per test) and the hostile-peers soak
# (84 s) run in their own target, so that the suite stays well under 15 minutes on 2 cores.
SLOW_TESTS := tests/fleet/test_ranks.py tests/fleet/test_nodes.py tests/e2e/test_e2e_hostile_peers.py

# Two workers (pytest-xdist), a test file each at a time: most tests wait on subprocesses and
# links, so two keep both cores busy. PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25 -n $(PYTEST_WORKERS) --dist loadfile \
		$(addprefix --ignore=,$(SLOW_TESTS)) tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q $(SLOW_TESTS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_link.py
	$(BIN)/python benchmarks/bench_engines.py
	$(BIN)/python benchmarks/bench_pipeline.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) artifacts .pytest_cache

# The qemu-aarch64 board (hw_tests/boards/qemu-aarch64.toml): a Debian arm64 root filesystem
# under qemu-user-static, built once (root, network, 10-20 min: debootstrap + torch 2.8.0).
QEMU_ROOTFS := build/qemu-aarch64-rootfs

.PHONY: qemu-rootfs hil-qemu

qemu-rootfs:
	sh hw_tests/qemu/build-rootfs.sh $(QEMU_ROOTFS)

# ONNX Runtime 1.21.0 training wheel for aarch64 / CPython 3.11, cross-built here (root for apt;
# hours on 2 cores; rerun resumes): tools/ort-aarch64/build.sh, build tree in ORT_BUILD_DIR.
.PHONY: ort-aarch64
ort-aarch64:
	bash tools/ort-aarch64/build.sh

# The HIL suite on that board (slow; not part of `make test`): reports in artifacts/hil-qemu.
hil-qemu: $(STAMP)
	sh hw_tests/qemu/register-binfmt.sh
	$(BIN)/hostctl hil --board hw_tests/boards/qemu-aarch64.toml --out artifacts/hil-qemu
