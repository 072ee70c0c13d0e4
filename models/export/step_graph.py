"""A model's recurrent step as a standalone graph: (x, state_*) → (y, state_*_out).

ONNX: opset 17, dynamic batch on every input and output, real tensors only, parameter-only
subexpressions (discretization, etc.) folded into constants. Uses the TorchScript-based exporter
(`dynamo=False`): our steps are plain tensor programs, which it traces exactly and quickly.
TorchScript: `torch.jit.trace` of the same wrapper, saved as a .ts archive (no pickle of Python objects).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from models.base import StreamingModel

ONNX_OPSET = 17


def graph_io_names(model: StreamingModel) -> tuple[list[str], list[str]]:
    """Input names ["x", "state_<name>", …] and output names ["y", "state_<name>_out", …]."""
    names = [f.name for f in model.state_spec()]
    return ["x"] + [f"state_{n}" for n in names], ["y"] + [f"state_{n}_out" for n in names]


class StepGraph(nn.Module):
    """Wraps `model.step` with flat tensor arguments, as exporters need."""

    def __init__(self, model: StreamingModel):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        y, new_state = self.model.step(x, tuple(state))
        return (y, *new_state)


def _example_inputs(model: StreamingModel, batch: int = 2) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, model.config.d_input, generator=g)
    return (x, *model.init_state(batch, dtype=torch.float32))


def export_onnx(model: StreamingModel, path: str | Path, opset: int = ONNX_OPSET) -> Path:
    """Write the model's step as ONNX to `path` (float32, eval mode, dynamic batch). Returns the path."""
    path = Path(path)
    model = model.float().eval()
    inputs, outputs = graph_io_names(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about constant folding / legacy exporter
        torch.onnx.export(
            StepGraph(model).eval(),  # export restores the wrapper's mode, and with it the model's
            _example_inputs(model),
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in inputs + outputs},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    if onnx_has_complex(path):
        raise RuntimeError(f"{model.name}: exported step graph contains complex tensors; steps must be real")
    record_state_inputs(path, inputs[1:])
    return path


def record_state_inputs(path: str | Path, names: list[str]) -> None:
    """Store the ordered state input names in the graph's metadata ("ms3m.state_inputs"). The exporter
    drops inputs a graph never reads (e.g. a held feature a scale-1 MS³M expert always overwrites);
    runtimes feed state tensors by these names and skip the dropped ones."""
    import json

    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    m.metadata_props.add(key="ms3m.state_inputs", value=json.dumps(names))
    onnx.save(m, str(path))


def export_torchscript(model: StreamingModel, path: str | Path) -> Path:
    """Write the model's step as a traced TorchScript archive to `path`."""
    path = Path(path)
    model = model.float().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(StepGraph(model), _example_inputs(model), check_trace=False)
    traced = torch.jit.freeze(traced.eval())
    traced.save(str(path))
    return path


def onnx_has_complex(path: str | Path) -> bool:
    """True if any tensor type in the ONNX graph (inputs, outputs, values, initializers) is complex."""
    import onnx

    complex_types = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}
    m = onnx.load(str(path))
    m = onnx.shape_inference.infer_shapes(m)
    values = list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)
    if any(v.type.tensor_type.elem_type in complex_types for v in values):
        return True
    if any(t.data_type in complex_types for t in m.graph.initializer):
        return True
    for node in m.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in complex_types:
                return True
    return False
