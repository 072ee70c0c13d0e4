"""The model zoo: every forecaster under one streaming contract (see models.base).

    from models import create_model, list_models
    m = create_model("s4d", d_input=4, n_targets=1, horizon=8)
    y = m(x)                        # (B, L, 4) → (B, L, 8, 1)
    y_t, s = m.step(x[:, 0], m.init_state(B))
"""

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel
from models.registry import create_model, list_models, model_class, model_from_config, register


def __getattr__(name: str):
    # Layer classes by their seed names, imported on first use: S4Layer, S4DLayer, S5Layer, MambaLayer, LRULayer …
    # each built from its model's config, `S4DLayer(S4DConfig(...))`, or `S4DLayer.build(d_model, **fields)`
    layers = {
        "S4Layer": "models.layers.s4", "S4DLayer": "models.layers.s4d", "S5Layer": "models.layers.s5",
        "MambaLayer": "models.layers.mamba", "LRULayer": "models.layers.lru", "H3Layer": "models.layers.h3",
        "GatedMLPLayer": "models.layers.gated_mlp",
    }
    if name in layers:
        import importlib

        return getattr(importlib.import_module(layers[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = [
    "ForecastHead",
    "ModelConfig",
    "State",
    "StateField",
    "StreamingModel",
    "create_model",
    "list_models",
    "model_class",
    "model_from_config",
    "register",
]
