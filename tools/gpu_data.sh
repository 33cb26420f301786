#!/usr/bin/env bash
# `make gpu-data`: pack exactly what benchmarks/gpu_suite.py needs on the GPU machine into .devdata/
# (git-ignored; the device call carries it): the CIFAR-10 JPEG archive (unpacked there by the suite, in
# the background while it times the UNet) and the Fashion-MNIST raw files. With WHEELS=1 it also
# downloads diffusers' wheel (and importlib_metadata, the one requirement the GPU image lacks) into
# .whl/ for the UNet2DModel comparison (needs internet). Checks that the working tree plus what is
# carried stays under the device tool's 64 MiB.
#
#   make gpu-data [SHARED_DATA=../shared/data] [WHEELS=1]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED_DATA:-../shared/data}"
DEST=.devdata
LIMIT=$((64 * 1024 * 1024))

for f in "$SHARED/cifar10-jpeg.tar.gz" "$SHARED/fashion-mnist-partial/FashionMNIST/raw/train-images-idx3-ubyte"; do
    if [ ! -f "$f" ]; then
        echo "gpu-data: $f not found; point SHARED_DATA at the folder holding cifar10-jpeg.tar.gz and fashion-mnist-partial/" >&2
        exit 2
    fi
done
rm -rf "$DEST"
mkdir -p "$DEST/FashionMNIST/raw"
cp "$SHARED/cifar10-jpeg.tar.gz" "$DEST/"
cp "$SHARED/fashion-mnist-partial/FashionMNIST/raw/"*-ubyte "$DEST/FashionMNIST/raw/"

if [ "${WHEELS:-0}" = 1 ]; then
    PY="${PYTHON:-python3}"
    DIFFUSERS="$("$PY" -c 'import diffusers; print(diffusers.__version__)' 2>/dev/null || echo 0.42.1)"
    rm -rf .whl && mkdir -p .whl
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
        "diffusers==$DIFFUSERS" importlib_metadata
fi

tree=$(git ls-files -z | du --files0-from=- -cb | tail -1 | cut -f1)
carried=$(du -sb "$DEST" $( [ -d .whl ] && echo .whl ) | awk '{s += $1} END {print s}')
total=$((tree + carried))
printf 'gpu-data: %s (%s) + working tree (%s) = %s of the 64 MiB a device call may carry\n' \
    "$(ls -d $DEST $( [ -d .whl ] && echo .whl ) | tr '\n' ' ')" "$(numfmt --to=iec "$carried")" \
    "$(numfmt --to=iec "$tree")" "$(numfmt --to=iec "$total")"
if [ "$total" -ge "$LIMIT" ]; then
    echo "gpu-data: over the 64 MiB limit" >&2
    exit 1
fi
