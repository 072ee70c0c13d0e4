"""The model zoo: every forecaster under one streaming contract (see models.base).

    from models import create_model, list_models
    m = create_model("s4d", d_input=4, n_targets=1, horizon=8)
    y = m(x)                        # (B, L, 4) → (B, L, 8, 1)
    y_t, s = m.step(x[:, 0], m.init_state(B))

The State Space Model Universal seed's API works too: `create_model(architecture="h3", ssm_layer="s4", …)` (an
architecture around a sequence core, `compositions()` lists the valid pairs), and its component classes by name.
"""

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel
from models.registry import compositions, create_model, list_models, model_class, model_from_config, register

# The seed's component classes by name, imported on first use. Layers are built from their model's config,
# `S4DLayer(S4DConfig(...))`, or from keywords, `S4Layer(d_model=64, d_state=16, init_method="legs")`; the seed's
# architecture constructors (H3Model, GatedMLPModel, MambaModel) build our forecasters; TransformerModel is the
# encoder–decoder the `transformer_encdec` forecaster runs.
_SEED_NAMES = {
    "S4Layer": "models.layers.s4", "S4DLayer": "models.layers.s4d", "S5Layer": "models.layers.s5",
    "MambaLayer": "models.layers.mamba", "MambaBlock": "models.layers.mamba", "LRULayer": "models.layers.lru",
    "H3Layer": "models.layers.h3", "GatedMLPLayer": "models.layers.gated_mlp",
    "H3Model": "models.layers.h3", "GatedMLPModel": "models.layers.gated_mlp", "MambaModel": "models.layers.mamba",
    "TransformerEncoderLayer": "models.baselines.transformer_encdec",
    "TransformerDecoderLayer": "models.baselines.transformer_encdec",
    "TransformerModel": "models.baselines.transformer_encdec",
}


def __getattr__(name: str):
    if name in _SEED_NAMES:
        import importlib

        return getattr(importlib.import_module(_SEED_NAMES[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = [
    "ForecastHead",
    "ModelConfig",
    "State",
    "StateField",
    "StreamingModel",
    "compositions",
    "create_model",
    "list_models",
    "model_class",
    "model_from_config",
    "register",
]
