#!/usr/bin/env bash
# Fetch, on a machine with PyPI, the wheels that the GPU machine lacks (it reaches no registry), into .whl/
# (git-ignored), for CPython 3.12 on x86-64 Linux: the GPU image's python3 (docs/device-run.md).
# The GPU image already has torch (CUDA build), numpy, scipy, pandas, h5py, scikit-image, matplotlib,
# seaborn, pyyaml, tqdm, pytest and opt_einsum; the project needs these besides.  Versions: those the
# project is tested with on the development machine.
#
#   bash benchmarks/device_wheels.sh            # ~17 MB into .whl/
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl
mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$dest" \
    astropy==8.0.2 astropy-iers-data==0.2026.11.16.0.37.44 pyerfa==2.0.1.5 \
    jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
    pyro-ppl==1.9.2 pyro-api==0.1.2
# lenstronomy publishes only a source distribution: build its (pure-Python) wheel here.
if ! ls "$dest"/lenstronomy-1.14.2-*.whl >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary=:all: -d "$tmp" lenstronomy==1.14.2
    python3 -m pip wheel --quiet --no-deps --no-build-isolation -w "$dest" "$tmp"/lenstronomy-1.14.2.tar.gz
    rm -rf "$tmp"
fi
ls -l "$dest"
du -sh "$dest"
