#!/bin/sh
# Container entrypoint of both images (serve and trainer).
#
#   <no arguments>            ms3m serve
#   serve|simulate|train|...  ms3m <subcommand> [options]   (anything that is not a program on PATH)
#   -h / --version            ms3m -h / ms3m --version
#   ms3m-train-bundle ...     any program on PATH runs as given (python, sh, ms3m-healthcheck, ...)
#
# Before `serve`, every directory named in MS3M_BUNDLES must hold a bundle (config.json): a missing bundle is
# reported in one line with the two ways to provide it, instead of a traceback.
set -eu

if [ "$#" -eq 0 ]; then
    set -- serve
fi

case "$1" in
    -*) set -- ms3m "$@" ;;
    */*) ;;
    *)
        # A program on PATH resolves to a path; ms3m subcommands (and shell builtins such as `export` or
        # `eval`, which are also ms3m subcommands) do not.
        resolved=$(command -v -- "$1" 2>/dev/null || true)
        case "$resolved" in
            */*) ;;
            *) set -- ms3m "$@" ;;
        esac
        ;;
esac

if [ "$1" = ms3m ] && [ "${2:-}" = serve ] && [ -n "${MS3M_BUNDLES:-}" ]; then
    python - <<'PY'
import json
import os
import sys
from pathlib import Path

try:
    paths = json.loads(os.environ["MS3M_BUNDLES"])
except ValueError:
    sys.exit(0)  # not JSON: the service reports it
missing = [p for p in paths if isinstance(p, str) and not (Path(p) / "config.json").is_file()]
if missing:
    print(f"ms3m: no model bundle at {', '.join(missing)} (MS3M_BUNDLES). Mount a bundle directory there "
          "(docker run -v /path/to/bundle:/bundles/default:ro ...), bake one into the image "
          "(docker build --build-arg BUNDLE_DIR=...), or write one with the trainer image "
          "(ms3m-train-bundle /bundles/default --model ms3m --data synthetic).", file=sys.stderr)
    sys.exit(2)
PY
fi

exec "$@"
