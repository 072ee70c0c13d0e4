"""Model bundles as the service reads them: a validated manifest and verified files. No torch, no pickle.

A bundle is a directory written by the offline trainer (models.export.write_bundle):

    config.json          manifest (BundleManifest below): model name + config, KPI names, horizon,
                         sampling period, normalization, state layout, graph I/O, data, metrics,
                         and the sha256 of every other file
    weights.safetensors  parameters (safetensors: no code execution on load)
    step.onnx            the recurrent step (inputs x, state_*; outputs y, state_*_out; dynamic batch)
    step.ts              the same step as TorchScript
    experts/…            MS³M only: one step graph per expert plus the gate

Loading validates everything and raises BundleError naming the bundle and the offending file or field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST, sha256_file

MAX_MANIFEST_BYTES = 8 * 1024 * 1024


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the bundle and the file or field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Normalization(_Strict):
    """z-score statistics fitted on the training split: x_norm = (x − mean) / std."""

    kind: Literal["zscore"] = "zscore"
    input_mean: list[float]
    input_std: list[float]
    target_mean: list[float]
    target_std: list[float]

    @field_validator("input_std", "target_std")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not (s > 0) for s in v):
            raise ValueError("standard deviations must be > 0")
        return v


class FileEntry(_Strict):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        p = Path(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"file path must be relative inside the bundle, got {v!r}")
        return v


class StateEntry(_Strict):
    name: str
    shape: list[int]


class GraphSpec(_Strict):
    inputs: list[str]
    outputs: list[str]
    opset: int


class ExpertEntry(_Strict):
    """One MS³M expert: its own step graph and state layout."""

    name: str
    kind: str
    scale: int = Field(ge=1)
    state: list[StateEntry]
    graph: GraphSpec
    files: dict[str, FileEntry]
    cost_us: float | None = None


class BundleManifest(_Strict):
    format: Literal["ms3m-bundle"]
    format_version: int
    name: str = Field(min_length=1, max_length=128)
    created: str
    model: str
    config: dict[str, Any]
    inputs: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    horizon: int = Field(ge=1)
    period_ms: int = Field(ge=1)
    normalization: Normalization
    state: list[StateEntry]
    graph: GraphSpec
    files: dict[str, FileEntry]
    experts: list[ExpertEntry] | None = None
    gate: dict[str, Any] | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    model_info: dict[str, Any] = Field(default_factory=dict)  # the model's own facts (sparsity, quantization, …)

    @field_validator("format_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != BUNDLE_VERSION:
            raise ValueError(f"unsupported bundle format_version {v} (this service reads {BUNDLE_VERSION}; write "
                             f"the bundle again from its training run: ms3m export RUN --out DIR)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        n = self.normalization
        if len(n.input_mean) != len(self.inputs) or len(n.input_std) != len(self.inputs):
            raise ValueError("normalization input stats must have one entry per input KPI")
        if len(n.target_mean) != len(self.targets) or len(n.target_std) != len(self.targets):
            raise ValueError("normalization target stats must have one entry per target KPI")
        if self.config.get("d_input") not in (None, len(self.inputs)):
            raise ValueError(f"config.d_input={self.config.get('d_input')} but {len(self.inputs)} inputs are named")
        if self.config.get("n_targets") not in (None, len(self.targets)):
            raise ValueError(f"config.n_targets={self.config.get('n_targets')} but {len(self.targets)} targets")
        if self.config.get("horizon") not in (None, self.horizon):
            raise ValueError(f"config.horizon={self.config.get('horizon')} but horizon={self.horizon}")
        expected_in = ["x"] + [f"state_{s.name}" for s in self.state]
        if self.graph.inputs != expected_in:
            raise ValueError(f"graph inputs {self.graph.inputs} do not match the state layout {expected_in}")
        for required in ("weights", "onnx"):
            if required not in self.files:
                raise ValueError(f"files.{required} is missing")
        return self

    @property
    def state_floats_per_cell(self) -> int:
        total = 0
        for s in self.state:
            n = 1
            for d in s.shape:
                n *= d
            total += n
        return total


class Bundle:
    """A loaded, verified bundle: `manifest` plus absolute paths of its files by role."""

    def __init__(self, root: Path, manifest: BundleManifest):
        self.root = root
        self.manifest = manifest

    def path(self, role: str) -> Path:
        return self.root / self.manifest.files[role].path

    def expert_path(self, expert: str, role: str = "onnx") -> Path:
        for e in self.manifest.experts or []:
            if e.name == expert:
                return self.root / e.files[role].path
        raise KeyError(f"bundle {self.root}: no expert {expert!r}")

    @property
    def name(self) -> str:
        return self.manifest.name

    def __repr__(self) -> str:
        m = self.manifest
        return f"Bundle({m.name!r}, model={m.model!r}, inputs={len(m.inputs)}, horizon={m.horizon}, root={self.root})"


def read_manifest(root: str | Path) -> BundleManifest:
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"bundle {root}: not a directory")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"bundle {root}: missing file {MANIFEST}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"bundle {root}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"bundle {root}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"bundle {root}: {MANIFEST} is not an {BUNDLE_FORMAT} manifest")
    try:
        return BundleManifest.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise BundleError(f"bundle {root}: {MANIFEST}: {where}: {first['msg']}") from None


def load_bundle(root: str | Path, verify: bool = True) -> Bundle:
    """Read and validate a bundle; with `verify`, check every file exists and matches its sha256."""
    root = Path(root).resolve()
    manifest = read_manifest(root)
    entries = list(manifest.files.values())
    for e in manifest.experts or []:
        entries.extend(e.files.values())
    for entry in entries:
        p = root / entry.path
        if not p.is_file():
            raise BundleError(f"bundle {root}: missing file {entry.path}")
        if verify and sha256_file(p) != entry.sha256:
            raise BundleError(f"bundle {root}: file {entry.path} is corrupt (sha256 does not match {MANIFEST})")
    return Bundle(root, manifest)
