"""Export of step graphs (ONNX, TorchScript) and model bundles (trainer → service)."""

from models.export.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, load_bundle_model, write_bundle
from models.export.step_graph import (
    StepGraph,
    export_onnx,
    export_torchscript,
    graph_io_names,
    onnx_has_complex,
)

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "StepGraph",
    "export_onnx",
    "export_torchscript",
    "graph_io_names",
    "load_bundle_model",
    "onnx_has_complex",
    "write_bundle",
]
