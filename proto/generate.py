"""Generate (or check) the committed Python code for proto/ms3m/v1/*.proto.

    python proto/generate.py          # regenerate in place (what `make proto` runs)
    python proto/generate.py --check  # exit 1 and name the stale files if regeneration would change them

Generation uses grpcio-tools, pinned in the `dev` extra, so the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted((root / "ms3m" / "v1").glob("*.proto"))


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc over every .proto under `root`, writing into `out_dir`; returns the generated files."""
    import grpc_tools
    from grpc_tools import protoc  # dev dependency

    include = str(Path(grpc_tools.__file__).parent / "_proto")  # well-known types
    files = [str(p.relative_to(root)) for p in proto_files(root)]
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {files}")
    return sorted(p for p in Path(out_dir).rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def stale_files(root: Path = PROTO_ROOT) -> list[str]:
    """Generated files under `root` that differ from a fresh generation (missing or extra count too)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.relative_to(tmp): p for p in generate(Path(tmp), root)}
        committed = {
            p.relative_to(root): p for p in root.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)
        }
        stale = [str(rel) for rel in sorted(set(fresh) | set(committed))
                 if rel not in fresh or rel not in committed
                 or not filecmp.cmp(fresh[rel], committed[rel], shallow=False)]
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the committed code is fresh")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated protobuf code (run `make proto`):", *stale, sep="\n  ")
            return 1
        print("generated protobuf code is fresh")
        return 0
    generated = generate(PROTO_ROOT)
    print(f"generated {len(generated)} files under {PROTO_ROOT / 'ms3m' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
