"""The MS³M xApp: gRPC KPI ingest → window buffer → batched recurrent step → forecasts and actions.

Nothing here imports torch on the serving path; models arrive as bundles run by onnxruntime.
"""

__version__ = "0.1.0"
