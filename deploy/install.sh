#!/bin/sh
# Install the MS³M xApp into a Python environment. The Dockerfile's only install step; tests run it outside
# Docker in a fresh virtualenv (tests/deploy/test_dockerfile.py).
#
#   deploy/install.sh wheel   SRC OUTDIR   build the project wheel (no dependencies) from the source tree SRC
#   deploy/install.sh serve   SRC|WHEEL    serving install: core dependencies only (onnxruntime runs the models);
#                                          fails if torch ends up installed
#   deploy/install.sh trainer SRC|WHEEL    serving install + the `train` extra (torch CPU, onnx, pandas, ...)
#   deploy/install.sh torch-requirement SRC|WHEEL   print the torch pin of the `train` extra (torch==X.Y.Z)
#
# Environment:
#   PYTHON           interpreter of the target environment (default: python3)
#   PIP_ARGS         extra pip options (e.g. "--no-index --find-links /wheels" for an offline build)
#   TORCH_INDEX_URL  trainer only: index that serves the CPU torch wheel, e.g. https://download.pytorch.org/whl/cpu
#                    (the Dockerfile's default). torch is installed from there first, pinned to the version the
#                    project's `train` extra names, so the extra resolves to it and never pulls the CUDA wheels
#                    of PyPI. Empty: torch comes from pip's configured indexes (machines with a local CPU wheel).
set -eu

PY=${PYTHON:-python3}
PIP_ARGS=${PIP_ARGS:-}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
}

pip_install() {
    # shellcheck disable=SC2086  # PIP_ARGS is a list of options
    "$PY" -m pip install --no-cache-dir --disable-pip-version-check $PIP_ARGS "$@"
}

# The torch requirement of the `train` extra (e.g. "torch==2.13.0"), read from pyproject.toml or the wheel.
torch_requirement() {
    "$PY" - "$1" <<'PY'
import re
import sys
import zipfile
from pathlib import Path

target = Path(sys.argv[1])
if target.is_dir():
    import tomllib

    reqs = tomllib.loads((target / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
else:
    with zipfile.ZipFile(target) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        reqs = [line.split(":", 1)[1].split(";")[0].strip() for line in z.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra == \"train\"" in line]
print(next(r.replace(" ", "") for r in reqs if re.match(r"torch\b", r)))
PY
}

check_no_torch() {
    if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
        echo "install.sh: torch is installed in the serving environment; the serve image must not carry it" >&2
        exit 1
    fi
}

[ "$#" -ge 2 ] || usage
mode=$1
target=$2

case "$mode" in
    wheel)
        [ "$#" -eq 3 ] || usage
        "$PY" -m pip wheel --no-cache-dir --disable-pip-version-check --no-deps $PIP_ARGS --wheel-dir "$3" "$target"
        ;;
    serve)
        pip_install "$target"
        check_no_torch
        "$PY" -c "import onnxruntime, service.app; print('ms3m serving install ok: onnxruntime', onnxruntime.__version__)"
        ;;
    torch-requirement)
        torch_requirement "$target"
        ;;
    trainer)
        torch_req=$(torch_requirement "$target")
        if [ -n "${TORCH_INDEX_URL:-}" ]; then
            pip_install --index-url "$TORCH_INDEX_URL" "$torch_req"
        fi
        pip_install "$target[train]"
        "$PY" -c "import torch, onnx; print('ms3m trainer install ok: torch', torch.__version__)"
        ;;
    *)
        usage
        ;;
esac
