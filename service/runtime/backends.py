"""Step runtimes: one interface, three backends, numpy in and out.

    rt = create_runtime(bundle, "onnxruntime")
    y, state = rt.run(x, state)      # x (B, D_in) float32, state: list of (B, *shape) → y (B, H, K)

onnxruntime is the default and the only one the serving image carries; the TorchScript and torch
backends import torch lazily and exist for comparison (bench runtime) and debugging.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from service.runtime.bundle import Bundle

RUNTIMES = ("onnxruntime", "torchscript", "torch")


class StepRuntime(Protocol):
    kind: str

    def run(self, x: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]: ...


def ort_session_options(threads: int | None = None, spinning: bool = False):
    """Session options for the step workload (many small graphs, one inference thread in the engine).

    threads: intra-op threads (default MS3M_ORT_THREADS or 1). Spinning is off by default: steps come
    in bursts from the micro-batcher, and spinning threads would steal the core that serves I/O
    (bench runtime prints the measurement behind these defaults)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or os.environ.get("MS3M_ORT_THREADS", "1"))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


class OnnxStepRuntime:
    kind = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int | None = None, spinning: bool = False):
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            str(onnx_path), ort_session_options(threads, spinning), providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.input_names[0] != "x":
            raise ValueError(f"{onnx_path}: a step graph takes x first, then its state tensors")
        meta = self.session.get_modelmeta().custom_metadata_map.get("ms3m.state_inputs")
        declared = json.loads(meta) if meta else self.input_names[1:]
        taken = set(self.input_names)
        # positions (in the caller's state list) of the inputs the graph really reads
        self._feed = [(i, name) for i, name in enumerate(declared) if name in taken]

    def run(self, x: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {"x": x}
        for i, name in self._feed:
            feeds[name] = state[i]
        out = self.session.run(None, feeds)
        return out[0], out[1:]


class TorchScriptStepRuntime:
    kind = "torchscript"

    def __init__(self, ts_path: str | Path, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.module = torch.jit.load(str(ts_path), map_location="cpu").eval()

    def run(self, x: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        t = self._torch
        with t.inference_mode():
            out = self.module(t.from_numpy(x), *(t.from_numpy(s) for s in state))
        return out[0].numpy(), [o.numpy() for o in out[1:]]


class TorchStepRuntime:
    kind = "torch"

    def __init__(self, bundle_root: str | Path, threads: int | None = None):
        import torch

        from models.export import load_bundle_model

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model, _ = load_bundle_model(bundle_root)

    def run(self, x: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        t = self._torch
        with t.inference_mode():
            y, new = self.model.step(t.from_numpy(x), tuple(t.from_numpy(s) for s in state))
        return y.numpy(), [s.numpy() for s in new]


def create_runtime(bundle: Bundle, kind: str = "onnxruntime", threads: int | None = None) -> StepRuntime:
    """The step runtime of `bundle` for backend `kind` (one of RUNTIMES)."""
    if kind == "onnxruntime":
        return OnnxStepRuntime(bundle.path("onnx"), threads)
    if kind == "torchscript":
        if "torchscript" not in bundle.manifest.files:
            raise ValueError(f"bundle {bundle.root} has no TorchScript graph (step.ts)")
        return TorchScriptStepRuntime(bundle.path("torchscript"), threads)
    if kind == "torch":
        return TorchStepRuntime(bundle.root, threads)
    raise ValueError(f"unknown runtime {kind!r}; choose from {RUNTIMES}")
