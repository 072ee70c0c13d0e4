#!/bin/sh
# Write a model bundle with `ms3m train`, unless one is already there (trainer image: ms3m-train-bundle).
#
#   ms3m-train-bundle [--force] BUNDLE_DIR [ms3m train options ...]
#
#   BUNDLE_DIR/config.json exists  -> nothing to do (exit 0); --force retrains and replaces the bundle
#   otherwise                      -> ms3m train <options> --out $MS3M_TRAIN_OUT --bundle BUNDLE_DIR.new.<pid>,
#                                     then renames it to BUNDLE_DIR, so a reader never sees half a bundle
#
# MS3M_TRAIN_OUT: training run directory (checkpoints, history; default /tmp/ms3m-train/<bundle name>).
# Example (docker-compose's one-shot trainer):
#   ms3m-train-bundle /bundles/default --model ms3m --data synthetic --steps 300 --quiet
set -eu

force=0
if [ "${1:-}" = --force ]; then
    force=1
    shift
fi
if [ "$#" -lt 1 ] || [ "${1#-}" != "$1" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
fi
bundle=${1%/}
shift

if [ -f "$bundle/config.json" ] && [ "$force" -eq 0 ]; then
    echo "ms3m-train-bundle: bundle exists at $bundle; not training (--force retrains)"
    exit 0
fi

name=$(basename "$bundle")
out=${MS3M_TRAIN_OUT:-/tmp/ms3m-train/$name}
new="$bundle.new.$$"
old="$bundle.old.$$"
trap 'rm -rf "$new"' EXIT
mkdir -p "$(dirname "$bundle")"

echo "ms3m-train-bundle: training -> $bundle (run directory $out)"
ms3m train "$@" --out "$out" --bundle "$new"
[ -f "$new/config.json" ] || { echo "ms3m-train-bundle: ms3m train wrote no bundle at $new" >&2; exit 1; }

if [ -e "$bundle" ]; then
    mv "$bundle" "$old"
fi
mv "$new" "$bundle"
rm -rf "$old"
echo "ms3m-train-bundle: bundle written to $bundle"
