"""Model registry: `create_model(name, **config)` builds any model of the zoo; `list_models()` names them.

Adding a model is one file plus its registration: a module in models/layers/ (an SSM: config, layer and
`SSMForecaster` subclass, see models.stack) or models/baselines/ whose class is decorated with
`@register("name")` and carries its config dataclass as `Config`. Every module of those packages is imported
on first use of the registry, so nothing else lists the model; a module elsewhere (models.ms3m) is named in
_EXTRA_MODULES.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

from models.base import ModelConfig, StreamingModel
from models.framing import build_model

_REGISTRY: dict[str, type[StreamingModel]] = {}
_ZOO_PACKAGES = ("models.layers", "models.baselines", "models.seeds")
_EXTRA_MODULES = ("models.ms3m",)
_loaded = False

# Seed-style argument names accepted by create_model.
_ALIASES = {"num_layers": "n_layers", "n_layer": "n_layers", "input_dim": "d_input", "output_dim": "n_targets"}
_STACK_ARCHITECTURES = {"ssm", "stack", "ssm_stack", "deep_ssm"}


def register(name: str):
    """Class decorator: register a StreamingModel subclass (with a `Config` dataclass) under `name`."""

    def wrap(cls: type[StreamingModel]) -> type[StreamingModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name '{name}' registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        if not (isinstance(getattr(cls, "Config", None), type) and issubclass(cls.Config, ModelConfig)):
            raise TypeError(f"{cls.__name__} needs a Config dataclass derived from ModelConfig")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_zoo() -> None:
    global _loaded
    if _loaded:
        return
    for pkg_name in _ZOO_PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ModuleNotFoundError as e:
            if e.name == pkg_name:
                continue
            raise
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg_name}.{info.name}")
    for mod in _EXTRA_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    _loaded = True


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load_zoo()
    return sorted(_REGISTRY)


def model_class(name: str) -> type[StreamingModel]:
    _load_zoo()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def config_fields(name: str) -> dict[str, Any]:
    """The config fields of a model with their defaults (for --help and docs)."""
    cfg = model_class(name).Config
    out = {}
    for f in dataclasses.fields(cfg):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def create_model(
    name: str | None = None, *, architecture: str | None = None, ssm_layer: str | None = None, **config: Any
) -> StreamingModel:
    """Build a model: `create_model("s4d", d_input=4, n_targets=1, horizon=8, d_model=64)`.

    Seed-style calls work too: `create_model(architecture="ssm", ssm_layer="s4d", d_model=64,
    d_state=64, num_layers=4)`. Unknown hyperparameters raise TypeError naming the valid ones.
    """
    if name is None:
        if architecture is None:
            raise TypeError("create_model needs a model name (or architecture=..., ssm_layer=...)")
        arch = architecture.lower()
        if arch in _STACK_ARCHITECTURES:
            if ssm_layer is None:
                raise TypeError(f"architecture='{architecture}' needs ssm_layer=... (one of {list_models()})")
            name = ssm_layer.lower()
        else:
            name = arch
            if ssm_layer is not None:
                config["ssm_layer"] = ssm_layer
    elif ssm_layer is not None:
        config["ssm_layer"] = ssm_layer
    config = {_ALIASES.get(k, k): v for k, v in config.items()}
    cls = model_class(name)
    return build_model(cls, cls.Config.from_dict(config))


def model_from_config(name: str, config: dict[str, Any]) -> StreamingModel:
    """Rebuild a model from its registry name and `config.to_dict()` (as stored in bundles)."""
    cls = model_class(name)
    return build_model(cls, cls.Config.from_dict(config))
