#!/usr/bin/env bash
# Cross-build an ONNX Runtime 1.21.0 wheel with the on-device training API
# (onnxruntime.training.api) for linux aarch64, CPython 3.11, on a Debian
# bookworm x86_64 host. Offline but for the package registries: every source
# comes from Debian's archive (deb-src, through a private apt configuration so
# the machine's own apt lists stay untouched) or from PyPI sdists.
#
# Stages: fetch, unpack, configure, build, wheel. Each prints its elapsed time
# and leaves a stamp in $B/stamps; a rerun skips stamped stages, and the build
# stage resumes where ninja stopped (kept build tree, ccache).
#
#   ORT_BUILD_DIR  build tree, outside the repository (default /work/ort-build)
#   ORT_JOBS       parallel compile jobs (default 2)
#   ORT_STAGES     run only these stages, e.g. "configure build" (default: all)
#
# The fetch stage installs host tools with apt (needs root): the aarch64 cross
# compiler, protobuf-compiler 3.21.12 (the protoc ORT 1.21 pins), ccache.
set -euo pipefail

B=${ORT_BUILD_DIR:-/work/ort-build}
JOBS=${ORT_JOBS:-2}
STAGES=${ORT_STAGES:-"fetch unpack configure build wheel"}
ORT_VER=1.21.0
SRC=$B/src                      # downloaded archives
DEPS=$B/deps                    # unpacked dependency sources
ORT=$B/onnxruntime-$ORT_VER     # unpacked, patched ORT source
OBJ=$B/build                    # CMake/ninja build tree
SYSROOT=$B/sysroot              # arm64 headers extracted from .debs (Python)
VENV=$B/venv                    # host tools from PyPI (cmake >= 3.28, numpy, wheel)
DIST=$B/dist
HERE=$(cd "$(dirname "$0")" && pwd)

# Private apt configurations: own source lists, own state lists.
apt_priv() { # $1 = name of a list file under $B/apt; rest = apt-get arguments
    local name=$1
    shift
    apt-get -o Dir::Etc::sourcelist="$B/apt/$name.list" -o Dir::Etc::sourceparts=/dev/null \
        -o Dir::State::Lists="$B/apt/$name.lists" "$@"
}

log() { echo "[ort-aarch64 $(date +%H:%M:%S)] $*"; }

stage() { # $1 = stage name, $2 = function
    local name=$1 fn=$2 t0 t1
    case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
    if [ -e "$B/stamps/$name" ]; then
        log "stage $name: stamp exists ($(cat "$B/stamps/$name") s last time), skipped"
        return 0
    fi
    log "stage $name: start"
    t0=$(date +%s)
    "$fn"
    t1=$(date +%s)
    mkdir -p "$B/stamps"
    echo $((t1 - t0)) >"$B/stamps/$name"
    log "stage $name: done in $((t1 - t0)) s"
}

# sha256 of every downloaded file: the recipe is pinned, a changed archive stops it.
check_sums() {
    (cd "$SRC" && sha256sum --quiet -c "$HERE/SHA256SUMS.sources")
}

# Debian source packages: name=version (trixie, except the sid packaging of 1.23.2).
DEB_SOURCES="abseil=20240722.0-4 protobuf=3.21.12-11+deb13u1 flatbuffers=23.5.26+dfsg-4
 eigen3=3.4.0-5 nlohmann-json3=3.11.3-2.1 ms-gsl=4.0.0-3.1 re2=20240702-3 dlpack=1.0-1
 howardhinnant-date=3.0.3+ds-2 cpuinfo=0.0~git20250905.877328f-1 cxxopts=3.3.1-1
 onnxruntime=1.21.0+dfsg-1 onnxruntime=1.23.2+dfsg-6.1"

guard_early_logging() {
    "$VENV/bin/python" - "$ORT" <<'PY'
import pathlib, sys
root = pathlib.Path(sys.argv[1]) / "onnxruntime" / "core"
guard = " && logging::LoggingManager::HasDefaultLogger()"
for rel, cond in (
    ("platform/posix/env.cc", "if (!cpuinfo_available_)"),
    ("common/cpuid_info.cc", "if (!pytorch_cpuinfo_init_)"),
):
    path = root / rel
    text = path.read_text()
    if cond[:-1] + guard not in text:
        assert cond in text, (rel, cond)
        path.write_text(text.replace(cond, cond[:-1] + guard + ")", 1))
PY
}

drop_datasets_copy() {
    "$VENV/bin/python" - "$ORT/cmake/onnxruntime_python.cmake" <<'PY'
import pathlib, sys
path = pathlib.Path(sys.argv[1])
text = path.read_text()
copy = ("  COMMAND ${CMAKE_COMMAND} -E copy\n      ${onnxruntime_python_datasets_data}\n"
        "      $<TARGET_FILE_DIR:${build_output_target}>/onnxruntime/datasets/\n")
path.write_text(text.replace(copy, ""))
PY
}

fetch() {
    mkdir -p "$SRC" "$B/apt"
    cat >"$B/apt/src.list" <<'EOF'
deb-src http://deb.debian.org/debian trixie main
deb-src http://deb.debian.org/debian sid main
EOF
    cat >"$B/apt/bookworm.list" <<'EOF'
deb [arch=amd64,arm64] http://deb.debian.org/debian bookworm main
deb [arch=amd64,arm64] http://deb.debian.org/debian bookworm-updates main
deb [arch=amd64,arm64] http://deb.debian.org/debian-security bookworm-security main
EOF
    echo "deb [arch=amd64] http://deb.debian.org/debian trixie main" >"$B/apt/trixie.list"
    for l in src bookworm trixie; do
        mkdir -p "$B/apt/$l.lists/partial"
        apt_priv "$l" update -qq
    done
    # Host tools (new packages only; nothing of the host is upgraded).
    if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v protoc >/dev/null ||
        ! command -v ccache >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt_priv bookworm install -y -q --no-install-recommends \
            g++-aarch64-linux-gnu protobuf-compiler ccache
    fi
    protoc --version | grep -q '3\.21\.12' || {
        echo "protoc 3.21.12 needed (ORT 1.21 pins protobuf v21.12): $(protoc --version)" >&2
        exit 1
    }
    cd "$SRC"
    # The archive here lacks some .dsc/.debian.tar.xz files: apt then stops with
    # an error but keeps what it fetched; SHA256SUMS.sources decides what counts.
    for p in $DEB_SOURCES; do
        apt_priv src source --download-only "$p" >/dev/null 2>&1 || true
    done
    # Header-only pieces not reachable as sources here: SafeInt (trixie, arch all),
    # Boost.Mp11 (bookworm's boost headers), CPython 3.11 arm64 headers (bookworm).
    apt_priv trixie download -qq libsafeint-dev=3.0.28a+dfsg-4 2>/dev/null
    apt_priv bookworm download -qq libboost1.81-dev=1.81.0-5+deb12u1 \
        libpython3.11-dev:arm64=3.11.2-6+deb12u9 2>/dev/null
    [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'cmake==3.31.10' 'numpy==2.4.6' 'wheel==0.48.0' 'setuptools==65.5.0' 'packaging==26.4'
    # onnx and pybind11 as PyPI sdists (the onnx sdist is the full source tree).
    "$VENV/bin/pip" download -q --no-binary :all: --no-deps --no-build-isolation -d "$SRC" \
        onnx==1.17.0 pybind11==2.13.6
    # tensorboard's compat protos, as the descriptors inside its wheel (see
    # tensorboard_descriptors.py): the training build needs them, no sdist exists.
    "$VENV/bin/pip" download -q --only-binary :all: --no-deps -d "$SRC" tensorboard==2.21.0
    check_sums
}

untar() { # $1 archive, $2 target dir: unpack with the top directory stripped
    rm -rf "$2"
    mkdir -p "$2"
    tar -xf "$1" -C "$2" --strip-components=1
}

unpack() {
    check_sums
    rm -rf "$ORT" "$DEPS" "$SYSROOT"
    mkdir -p "$DEPS" "$SYSROOT"
    untar "$SRC/onnxruntime_1.21.0+dfsg.orig.tar.xz" "$ORT"
    tar -xf "$SRC/onnxruntime_1.23.2+dfsg-6.1.debian.tar.xz" -C "$B" # -> $B/debian
    untar "$SRC/abseil_20240722.0.orig.tar.gz" "$DEPS/abseil_cpp"
    untar "$SRC/protobuf_3.21.12.orig.tar.gz" "$DEPS/protobuf"
    untar "$SRC/flatbuffers_23.5.26+dfsg.orig.tar.xz" "$DEPS/flatbuffers"
    untar "$SRC/eigen3_3.4.0.orig.tar.bz2" "$DEPS/eigen"
    untar "$SRC/nlohmann-json3_3.11.3.orig.tar.gz" "$DEPS/nlohmann_json"
    untar "$SRC/ms-gsl_4.0.0.orig.tar.gz" "$DEPS/gsl"
    untar "$SRC/re2_20240702.orig.tar.gz" "$DEPS/re2"
    untar "$SRC/dlpack_1.0.orig.tar.gz" "$DEPS/dlpack"
    untar "$SRC/howardhinnant-date_3.0.3+ds.orig.tar.xz" "$DEPS/date"
    untar "$SRC/cpuinfo_0.0~git20250905.877328f.orig.tar.xz" "$DEPS/pytorch_cpuinfo"
    untar "$SRC/onnx-1.17.0.tar.gz" "$DEPS/onnx"
    untar "$SRC/cxxopts_3.3.1.orig.tar.gz" "$DEPS/cxxopts"
    untar "$SRC/pybind11-2.13.6.tar.gz" "$DEPS/pybind11"
    # ORT applies these patches itself when it downloads; with FETCHCONTENT_SOURCE_DIR_*
    # it does not, so apply them here.
    local P=$ORT/cmake/patches
    patch -d "$DEPS/protobuf" -p1 --binary --ignore-whitespace -s <"$P/protobuf/protobuf_cmake.patch"
    # The onnx 1.17.0 sdist has CRLF line ends in these files (the GitHub zip ORT
    # patches has LF): normalise them first.
    sed -i 's/\r$//' "$DEPS/onnx/CMakeLists.txt" "$DEPS/onnx/onnx/common/file_utils.h" \
        "$DEPS/onnx/onnx/onnx_pb.h"
    patch -d "$DEPS/onnx" -p1 --binary --ignore-whitespace -s <"$P/onnx/onnx.patch"
    patch -d "$DEPS/flatbuffers" -p1 --binary --ignore-whitespace -s <"$P/flatbuffers/flatbuffers.patch"
    patch -d "$DEPS/gsl" -p1 --binary --ignore-whitespace -s <"$P/gsl/1064.patch"
    # Debian's patch for Eigen 3.4.0 (no Eigen::PropagateNaN there; ORT pins a later commit).
    patch -d "$ORT" -p1 -s <"$B/debian/patches/disable-propagate-nan-in-eigen3.patch"
    # The dfsg tarball drops the sample models of onnxruntime/python/datasets (*.onnx, *.pb):
    # ORT's post-build copy of them would run `cmake -E copy` with no source and fail the link
    # step of onnxruntime_pybind11_state. The wheel needs none of them.
    drop_datasets_copy
    # Where cpuinfo cannot read the CPU (qemu-user shows the host's /proc/cpuinfo; AWS Lambda
    # arm64 lacks the sysfs lists), ORT 1.21 logs the failure before any logger exists and
    # aborts at import ("Attempt to use DefaultLogger but none has been registered"; fixed
    # upstream later, microsoft/onnxruntime#28230): log only where a logger exists.
    guard_early_logging
    # utf8_range: ORT declares it for protobuf >= 22; protobuf 21.12 does not use it.
    mkdir -p "$DEPS/utf8_range"
    printf 'cmake_minimum_required(VERSION 3.16)\nproject(utf8_range C)\n' >"$DEPS/utf8_range/CMakeLists.txt"
    # The pybind11 sdist is the Python package (headers + CMake config), not the
    # repository: give it the header-only targets ORT links against.
    cat >"$DEPS/pybind11/CMakeLists.txt" <<'PYB'
cmake_minimum_required(VERSION 3.16)
project(pybind11 LANGUAGES CXX VERSION 2.13.6)
add_library(pybind11_headers INTERFACE)
target_include_directories(pybind11_headers INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/pybind11/include)
add_library(pybind11::headers ALIAS pybind11_headers)
add_library(pybind11::pybind11 ALIAS pybind11_headers)
add_library(pybind11::module ALIAS pybind11_headers)
set(pybind11_INCLUDE_DIRS ${CMAKE_CURRENT_SOURCE_DIR}/pybind11/include CACHE INTERNAL "")
PYB
    "$VENV/bin/python" "$HERE/tensorboard_descriptors.py" \
        "$SRC/tensorboard-2.21.0-py3-none-any.whl" "$B/tensorboard.pb"
    cp "$HERE/tensorboard-CMakeLists.txt" "$ORT/cmake/tensorboard/compat/proto/CMakeLists.txt"
    # Header-only pieces from .debs.
    local t=$B/debx
    rm -rf "$t" && mkdir -p "$t"
    dpkg-deb -x "$SRC/libsafeint-dev_3.0.28a+dfsg-4_all.deb" "$t"
    cp -r "$t"/usr/include/safeint "$DEPS/safeint"
    dpkg-deb -x "$SRC/libboost1.81-dev_1.81.0-5+deb12u1_amd64.deb" "$t"
    mkdir -p "$DEPS/mp11/include/boost"
    cp -r "$t"/usr/include/boost/mp11 "$t"/usr/include/boost/mp11.hpp "$DEPS/mp11/include/boost/"
    printf '%s\n' 'cmake_minimum_required(VERSION 3.16)' 'project(boost_mp11 LANGUAGES CXX)' \
        'add_library(boost_mp11 INTERFACE)' \
        'target_include_directories(boost_mp11 INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)' \
        'add_library(Boost::mp11 ALIAS boost_mp11)' >"$DEPS/mp11/CMakeLists.txt"
    dpkg-deb -x "$SRC/libpython3.11-dev_3.11.2-6+deb12u9_arm64.deb" "$SYSROOT"
    # Debian's python3.11/pyconfig.h includes <aarch64-linux-gnu/python3.11/pyconfig.h>, which
    # a native compiler finds under /usr/include; here only python3.11/ is on the include
    # path (Python_INCLUDE_DIR), so make the multiarch header reachable from there.
    ln -s ../aarch64-linux-gnu "$SYSROOT/usr/include/python3.11/aarch64-linux-gnu"
    rm -rf "$t"
    cat >"$B/aarch64-linux-gnu.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu $SYSROOT)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
EOF
}

configure() {
    local numpy_inc launcher=()
    numpy_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
    if command -v ccache >/dev/null; then
        launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    fi
    local fc=()
    for d in abseil_cpp protobuf flatbuffers eigen nlohmann_json gsl re2 dlpack date pytorch_cpuinfo onnx \
        utf8_range mp11 cxxopts; do
        fc+=("-DFETCHCONTENT_SOURCE_DIR_${d^^}=$DEPS/$d")
    done
    rm -rf "$OBJ"
    "$VENV/bin/cmake" -S "$ORT/cmake" -B "$OBJ" -G Ninja \
        -DCMAKE_TOOLCHAIN_FILE="$B/aarch64-linux-gnu.cmake" \
        -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
        -DFETCHCONTENT_FULLY_DISCONNECTED=ON -DFETCHCONTENT_TRY_FIND_PACKAGE_MODE=NEVER \
        "${fc[@]}" -DFETCHCONTENT_SOURCE_DIR_PYBIND11_PROJECT="$DEPS/pybind11" \
        -Dsafeint_SOURCE_DIR="$DEPS/safeint" \
        -DONNX_CUSTOM_PROTOC_EXECUTABLE="$(command -v protoc)" \
        -DPython_EXECUTABLE="$VENV/bin/python" \
        -DPython_INCLUDE_DIR="$SYSROOT/usr/include/python3.11" \
        -DPython_NumPy_INCLUDE_DIR="$numpy_inc" \
        `# Redundant since the symlink above (Python.h finds its own pyconfig.h first);` \
        `# kept because the measured build was configured with it.` \
        -DCMAKE_CXX_FLAGS="-I$SYSROOT/usr/include/aarch64-linux-gnu/python3.11" \
        -DCMAKE_C_FLAGS="-I$SYSROOT/usr/include/aarch64-linux-gnu/python3.11" \
        -DTENSORBOARD_DESCRIPTOR_SET="$B/tensorboard.pb" \
        `# 1.21 refuses ENABLE_TRAINING_APIS alone with Python ("Standalone On-Device` \
        `# Training build is not supported with Python bindings"): ENABLE_TRAINING is` \
        `# what the onnxruntime-training wheels were. Its tensorboard protos are full` \
        `# (not lite) messages, hence the full protobuf runtime.` \
        -Donnxruntime_ENABLE_PYTHON=ON -Donnxruntime_ENABLE_TRAINING_APIS=ON \
        -Donnxruntime_ENABLE_TRAINING=ON -Donnxruntime_USE_FULL_PROTOBUF=ON \
        -Donnxruntime_BUILD_UNIT_TESTS=OFF -Donnxruntime_ENABLE_LAZY_TENSOR=OFF \
        -Donnxruntime_BUILD_SHARED_LIB=OFF -Donnxruntime_RUN_ONNX_TESTS=OFF \
        -Donnxruntime_USE_MIMALLOC=OFF -Donnxruntime_USE_XNNPACK=OFF \
        -Donnxruntime_DEV_MODE=OFF -Donnxruntime_ENABLE_LTO=OFF \
        -Donnxruntime_BUILD_BENCHMARKS=OFF -Donnxruntime_GENERATE_TEST_REPORTS=OFF \
        2>&1 | tee "$B/configure.log"
    [ -f "$OBJ/build.ninja" ]
}

build() {
    export CCACHE_DIR=$B/ccache
    # ninja resumes where it stopped; its [n/N] lines in build.log give the progress.
    # -k 0: keep compiling past a failed file, so one error shows every error and
    # the rest of the hours are not lost; the stage still fails if any did.
    nice -n 19 "$VENV/bin/cmake" --build "$OBJ" --parallel "$JOBS" -- -k 0
}

wheel() {
    # As ORT's build.py does for --enable_training: setup.py from the build tree,
    # where the build copied the Python package next to onnxruntime_pybind11_state.so.
    # The host interpreter is CPython 3.11 (cp311 tag); the platform is the target's.
    rm -rf "$DIST"
    mkdir -p "$DIST"
    # setup.py reads requirements-training.txt from the working directory first. ORT's own
    # lists onnx, h5py and cerberus, which serve artifact generation and ORTModule, neither of
    # which a board runs: the on-device training API needs what the inference package needs,
    # so the board installs no onnx (the edge runtime with the ort engine imports neither
    # torch nor onnx, and installs neither).
    cp "$ORT/requirements.txt" "$OBJ/requirements-training.txt"
    (cd "$OBJ" && "$VENV/bin/python" "$ORT/setup.py" bdist_wheel --enable_training \
        --plat-name linux_aarch64 -d "$DIST")
    local whl
    whl=$(ls "$DIST"/*.whl)
    # The extension must be an aarch64 ELF, or the tag above would be a lie. (Read with
    # zipfile: `unzip -p | head -c` dies of SIGPIPE, which pipefail counts as a failure.)
    "$VENV/bin/python" - "$whl" <<'PY' || {
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    head = z.read("onnxruntime/capi/onnxruntime_pybind11_state.so")[:20]
sys.exit(0 if head[:6] == b"\x7fELF\x02\x01" and int.from_bytes(head[18:20], "little") == 183 else 1)
PY
        echo "onnxruntime_pybind11_state.so in $whl is not an aarch64 ELF" >&2
        exit 1
    }
    (cd "$DIST" && sha256sum ./*.whl | tee SHA256SUMS)
    ls -l "$DIST"
}

mkdir -p "$B"
stage fetch fetch
stage unpack unpack
stage configure configure
stage build build
stage wheel wheel
