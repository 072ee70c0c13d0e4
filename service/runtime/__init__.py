"""Model bundles and step runtimes for the service (torch-free on the onnxruntime path)."""

from service.runtime.backends import RUNTIMES, OnnxStepRuntime, StepRuntime, create_runtime
from service.runtime.bundle import Bundle, BundleError, BundleManifest, load_bundle

__all__ = [
    "RUNTIMES",
    "Bundle",
    "BundleError",
    "BundleManifest",
    "OnnxStepRuntime",
    "StepRuntime",
    "create_runtime",
    "load_bundle",
]
