#!/usr/bin/env bash
# On the GPU machine, from the repository root: install the wheels carried in .whl/ (made here by
# benchmarks/device_wheels.sh; the GPU machine reaches no registry), then run benchmarks/device_run.py with
# the given arguments.  Its console output also goes to $OUT/device_run_console.log.  docs/device-run.md.
#
#   bash benchmarks/device_run.sh [--deadline-s 480]
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || { echo "device_run.sh: installing .whl/*.whl failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 - <<'PY' || { echo "device_run.sh: a package the project needs is missing (see docs/device-run.md)" >&2; exit 1; }
import astropy, h5py, lenstronomy, scipy, skimage, torch, yaml
print(f"python3 {__import__('sys').version.split()[0]}: torch {torch.__version__} (CUDA {torch.version.cuda}, "
      f"available: {torch.cuda.is_available()}), lenstronomy {lenstronomy.__version__}, astropy {astropy.__version__}")
PY
log="${OUT:-.}/device_run_console.log"
python3 benchmarks/device_run.py "$@" 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
