#!/usr/bin/env bash
# The Raspberry Pi, proven in emulation: install xscreen from this checkout into a Debian 12 (bookworm,
# Python 3.11: what Raspberry Pi OS Bookworm is built on) arm64 root filesystem run through qemu-user,
# run the runtime tests there, screen a fixed film set with every shipped model on both machines and
# write OUT/parity.json and OUT/parity.md (see parity.py).
#
#   sudo benchmarks/aarch64/run.sh OUT
#
# Needs root (chroot, mounts), Debian packages mmdebstrap, qemu-user-static and binfmt-support (the
# kernel's binfmt_misc must run arm64 binaries), and ../shared/data (or XSCREEN_DATA). The root
# filesystem is built once and cached in XSCREEN_ROOTFS; SUITE=bullseye makes a Debian 11 one (Python 3.9,
# as Raspberry Pi OS Bullseye). QEMU_CPU picks the emulated core (default
# cortex-a72, a Raspberry Pi 4; cortex-a76 is a Pi 5). REUSE_VENV=1 keeps the last run's venv as it is
# (for iterating on this script; a real check installs fresh). MODELS=a folder of the checkout screens its
# model files instead of the shipped ones (default: xscreen/models as installed). N_FULLRES (default 120,
# all) fullres films and N_CXR3 (default 240) of the cxr3 test split make the film set. TESTS (default
# `tests`) names the test files to run in the arm64 userland (all of them take long under emulation);
# TESTS=none skips them. ONNX_SETTINGS=N also runs every .onnx model on the first N films' pixels under
# several onnxruntime session settings on both machines (parity.py onnx-options; 0, the default, skips it).
# HOST_PYTHON is the x86 Python that screens the reference side: it needs xscreen's runtime with [onnx]
# (numpy, Pillow, click, rich, a TFLite runtime, onnxruntime). Default: the checkout's own .venv/bin/python
# (made by the README's first commands), else python3; the script stops with what is missing if it lacks them.
# Timings under emulation mean nothing.
set -euo pipefail

OUT=$(realpath -m "${1:?usage: run.sh OUT}")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DATA=$(realpath -m "${XSCREEN_DATA:-$REPO/../shared/data}")
SUITE=${SUITE:-bookworm}
ROOTFS=${XSCREEN_ROOTFS:-$HOME/.cache/xscreen/aarch64-$SUITE}
if [ -z "${HOST_PYTHON:-}" ]; then
    HOST_PYTHON=python3 && [ -x "$REPO/.venv/bin/python" ] && HOST_PYTHON=$REPO/.venv/bin/python
fi
TESTS=${TESTS:-tests}
ONNX_SETTINGS=${ONNX_SETTINGS:-0}
N_CXR3=${N_CXR3:-240}
N_FULLRES=${N_FULLRES:-120}
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
PARITY=benchmarks/aarch64/parity.py

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (chroot and mounts): sudo $0 $*"
[ -d "$DATA/fullres" ] && [ -d "$DATA/cxr3" ] || die "no films at $DATA (set XSCREEN_DATA to the folder holding fullres/ and cxr3/)"
missing=$(cd "$REPO" && PYTHONPATH=$REPO "$HOST_PYTHON" -c '
import importlib.util as u
need = {"numpy": "numpy", "PIL": "Pillow", "click": "click", "rich": "rich", "onnxruntime": "onnxruntime"}
missing = [pip for module, pip in need.items() if u.find_spec(module) is None]
if not any(u.find_spec(m) for m in ("ai_edge_litert", "tflite_runtime", "tensorflow")):
    missing.append("ai-edge-litert")
print(" ".join(missing))' 2>&1) || missing="a working Python ($missing)"
[ -z "$missing" ] || die "HOST_PYTHON=$HOST_PYTHON lacks $missing. Use the Python xscreen is installed in, e.g.
    python3 -m venv .venv && .venv/bin/pip install '.[onnx]'   (run.sh then finds .venv/bin/python)
    or: sudo HOST_PYTHON=/path/to/venv/bin/python $0 $*"
command -v mmdebstrap >/dev/null || die "mmdebstrap missing: apt-get install mmdebstrap qemu-user-static binfmt-support"
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
        || die "the kernel cannot run arm64 binaries: apt-get install qemu-user-static binfmt-support (binfmt_misc)"
fi

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    say "building the arm64 root filesystem in $ROOTFS (once; a few minutes)"
    rm -rf "$ROOTFS.tmp" && mkdir -p "$(dirname "$ROOTFS")"
    mmdebstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$ROOTFS.tmp" http://deb.debian.org/debian
    mv "$ROOTFS.tmp" "$ROOTFS"
fi

mkdir -p "$OUT/host" "$OUT/arm64"
# Traps we hit: pip in the root filesystem needs the host's resolver and CA bundle.
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"
# The checkout as git sees it (tracked and new files, nothing ignored), copied: pip builds in place.
rm -rf "$ROOTFS/opt/xscreen" && mkdir -p "$ROOTFS/opt/xscreen" "$ROOTFS/mnt/data" "$ROOTFS/mnt/out"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && echo "{}"' \
    | tar -cf - -T -) | tar -xf - -C "$ROOTFS/opt/xscreen"

# qemu-user 7.2 passes the host's x86 /proc/cpuinfo through; with /sys mounted too, the cpuinfo library
# in ai-edge-litert and onnxruntime then segfaults (without /proc or /sys it only fails, and XNNPACK
# loses its CPU features). So the emulated CPU gets the cpuinfo of the board it stands for, whose
# "Model" line says it is emulated (xscreen bench reads that).
case "$QEMU_CPU" in
    cortex-a72) part=0xd08 features="fp asimd evtstrm crc32 cpuid" board="Raspberry Pi 4 Model B" ;;
    cortex-a76) part=0xd0b board="Raspberry Pi 5 Model B"
                features="fp asimd evtstrm crc32 cpuid atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp" ;;
    *) die "QEMU_CPU=$QEMU_CPU: use cortex-a72 (Raspberry Pi 4) or cortex-a76 (Raspberry Pi 5)" ;;
esac
CPUINFO=$OUT/arm64/cpuinfo
for cpu in $(seq 0 $(( $(nproc --all) - 1 ))); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\n' "$cpu" "$features"
    printf 'CPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 1\n\n' "$part"
done > "$CPUINFO"
printf 'Hardware\t: BCM2835\nModel\t\t: %s (emulated by qemu-user %s)\n' "$board" "$QEMU_CPU" >> "$CPUINFO"

# One private mount namespace: /proc, /sys, /dev, the films (read-only) and OUT vanish with it.
in_arm64() {
    unshare --mount --propagation private sh -euc '
        R=$1; shift
        mount -t proc proc "$R/proc"; mount --bind "$CPUINFO" "$R/proc/cpuinfo"
        mount -t sysfs sys "$R/sys"; mount --rbind /dev "$R/dev"
        mount --bind "$DATA" "$R/mnt/data"; mount -o remount,bind,ro "$R/mnt/data"
        mount --bind "$OUT" "$R/mnt/out"
        exec chroot "$R" env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" "$@"' \
        sh "$ROOTFS" "$@"
}
export DATA OUT CPUINFO

say "films: $N_FULLRES of fullres + $N_CXR3 of the cxr3 test split, stratified"
(cd "$REPO" && PYTHONPATH=$REPO "$HOST_PYTHON" $PARITY films --data "$DATA" --fullres "$N_FULLRES" \
    --split-file tests/fixtures/bundled_model_test_split.csv --cxr3 "$N_CXR3" --out "$OUT/films.txt")

say "host: screening with every model in xscreen/models"
(cd "$REPO" && PYTHONPATH=$REPO "$HOST_PYTHON" $PARITY screen --data "$DATA" --films "$OUT/films.txt" \
    --models "${MODELS:-xscreen/models}" --out "$OUT/host")

start=$(date +%s)
if [ "${REUSE_VENV:-0}" = 1 ] && [ -x "$ROOTFS/opt/venv/bin/python" ]; then
    say "arm64 ($QEMU_CPU, emulated): REUSE_VENV=1, the last run's venv as it is (no install)"
else
    say "arm64 ($QEMU_CPU, emulated): pip install '.[onnx]' pytest into a fresh venv"
    in_arm64 sh -euc 'rm -rf /opt/venv && python3 -m venv /opt/venv
        /opt/venv/bin/pip install -q --disable-pip-version-check "/opt/xscreen[onnx]" pytest pytest-timeout'
fi
echo "$(( $(date +%s) - start ))" > "$OUT/arm64/install_seconds"
say "arm64: installed in $(cat "$OUT/arm64/install_seconds") s"

say "arm64: screening with every model the installed package ships"
in_arm64 sh -euc 'cd /tmp && models=$(/opt/venv/bin/python -c "import xscreen, os; print(os.path.dirname(xscreen.__file__))")/models
    [ -n "$1" ] && models=/opt/xscreen/$1
    /opt/venv/bin/python /opt/xscreen/'$PARITY' screen --data /mnt/data --films /mnt/out/films.txt \
        --models "$models" --reference /mnt/out/host --out /mnt/out/arm64' sh "${MODELS:-}"

if [ "$ONNX_SETTINGS" -gt 0 ]; then
    say "both machines: the .onnx models on $ONNX_SETTINGS films under several onnxruntime session settings"
    (cd "$REPO" && PYTHONPATH=$REPO "$HOST_PYTHON" $PARITY onnx-options --films "$OUT/films.txt" \
        --models "${MODELS:-xscreen/models}" --out "$OUT/host" --limit "$ONNX_SETTINGS")
    in_arm64 sh -euc 'cd /tmp && models=$(/opt/venv/bin/python -c "import xscreen, os; print(os.path.dirname(xscreen.__file__))")/models
        [ -n "$1" ] && models=/opt/xscreen/$1
        /opt/venv/bin/python /opt/xscreen/'$PARITY' onnx-options --films /mnt/out/films.txt --models "$models" \
            --out /mnt/out/arm64 --limit "$2"' sh "${MODELS:-}" "$ONNX_SETTINGS"
fi

if [ "$TESTS" != none ]; then
    say "arm64: the runtime tests (the installed package; TensorFlow and real-film tests skip: the films are above)"
    in_arm64 sh -c 'cd /opt/xscreen && /opt/venv/bin/pytest -q -m "not slow and not data" -p no:cacheprovider \
        --junitxml /mnt/out/arm64/junit.xml $1' sh "$TESTS" > "$OUT/arm64/tests.log" 2>&1 || true
    tail -n 3 "$OUT/arm64/tests.log"
fi

(cd "$REPO" && PYTHONPATH=$REPO "$HOST_PYTHON" $PARITY report --reference "$OUT/host" --target "$OUT/arm64" \
    --films "$OUT/films.txt" --tests "$OUT/arm64/junit.xml" --out "$OUT")
say "wrote $OUT/parity.json and $OUT/parity.md"
