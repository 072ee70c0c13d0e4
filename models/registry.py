"""Model registry: `create_model(name, **config)` builds any model of the zoo; `list_models()` names them.

Adding a model is one file plus its registration: a module in models/layers/ (an SSM: config, layer and
`SSMForecaster` subclass, see models.stack) or models/baselines/ whose class is decorated with
`@register("name")` and carries its config dataclass as `Config`. Every module of those packages is imported
on first use of the registry, so nothing else lists the model; a module elsewhere (models.ms3m) is named in
_EXTRA_MODULES.

The seed's (State Space Model Universal) entry point is the same function: an architecture (h3, gated_mlp / gmlp,
mamba, the plain `ssm` stack, transformer = the encoder–decoder `transformer_encdec`) around a sequence core
(`ssm_layer`: s4, s4d, s5, lru, mamba; models.layers.cores), with `layer_kwargs`, `architecture_kwargs` and the
seed's keyword names (SEED_NAMES). The choice is stored in the config (ssm_layer, layer_options), so a bundle's
config rebuilds it; `compositions()` lists the valid pairs.
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

# The seed's keyword names (the State Space Model Universal README, the papers' spellings) → our field names.
SEED_NAMES = {
    "num_layers": "n_layers", "n_layer": "n_layers", "input_dim": "d_input", "output_dim": "n_targets",
    "init_method": "init", "hippo_method": "init", "expand_factor": "expand", "num_heads": "n_heads",
    "num_encoder_layers": "n_layers", "num_decoder_layers": "d_layers",
}
# The seed's architecture names → registry names. A registry name given positionally is that model (the zoo's
# `transformer` is the causal ALiBi decoder); `architecture="transformer"` is the seed's encoder–decoder.
ARCHITECTURES = {"h3": "h3", "gmlp": "gated_mlp", "gated_mlp": "gated_mlp", "gated-mlp": "gated_mlp",
                 "mamba": "mamba", "transformer": "transformer_encdec"}
_STACK_ARCHITECTURES = {"ssm", "stack", "ssm_stack", "deep_ssm"}
_UNSET: Any = object()  # ssm_layer not given (None is the seed's "no SSM")


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


def seed_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments with the seed's names (SEED_NAMES) renamed to our fields. TypeError when two spellings
    of one field disagree (`num_layers=2, n_layers=3`)."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        merge_field(out, SEED_NAMES.get(key, key), value)
    return out


def merge_field(fields: dict[str, Any], name: str, value: Any) -> None:
    """fields[name] = value, TypeError if it already holds a different value."""
    if name in fields and fields[name] != value:
        raise TypeError(f"'{name}' given twice with different values: {fields[name]!r} and {value!r}")
    fields[name] = value


def compositions() -> dict[str, tuple[str, ...]]:
    """Architecture → the sequence cores (`ssm_layer`) it takes. "ssm" is the plain stack, named by its core;
    "transformer" (the seed's encoder–decoder, `transformer_encdec`) takes none."""
    _load_zoo()
    table = {"ssm": tuple(n for n, c in sorted(_REGISTRY.items()) if getattr(getattr(c, "Layer", None), "core", None))}
    for name, cls in sorted(_REGISTRY.items()):
        cores = getattr(cls.Config, "CORES", None)
        if cores:
            table[name] = tuple(cores)
    table["transformer"] = ()
    return table


def compositions_text() -> str:
    """The valid architecture × core combinations, for error messages."""
    return "; ".join(f"{arch} × {{{', '.join(cores)}}}" if cores else f"{arch} (no ssm_layer)"
                     for arch, cores in compositions().items())


def _resolve_name(name: str | None, architecture: str | None, ssm_layer: Any) -> tuple[str, Any]:
    """(registry name, the ssm_layer left for the config) of a create_model call."""
    if name is not None and architecture is not None:
        raise TypeError("create_model takes a model name or architecture=..., not both")
    if name is None and architecture is None:
        raise TypeError("create_model needs a model name (or architecture=..., ssm_layer=...)")
    key = (name if name is not None else architecture).lower()
    if key in _STACK_ARCHITECTURES:
        if ssm_layer is _UNSET or ssm_layer is None:
            raise TypeError(f"architecture='{key}' needs ssm_layer=... (one of {compositions()['ssm']})")
        return ssm_layer.lower(), _UNSET
    if name is not None and key in list_models():
        return key, ssm_layer
    if key in ARCHITECTURES:
        return ARCHITECTURES[key], ssm_layer
    if key in list_models():
        return key, ssm_layer
    raise KeyError(f"unknown model or architecture '{key}'; models: {', '.join(list_models())}; "
                   f"architectures: {', '.join(sorted(ARCHITECTURES))}")


def seed_config(cls: type[StreamingModel], ssm_layer: Any = _UNSET, layer_kwargs: dict[str, Any] | None = None,
                architecture_kwargs: dict[str, Any] | None = None, **config: Any) -> ModelConfig:
    """`cls.Config` from a seed-style call: keywords, architecture_kwargs and layer_kwargs with the seed's names
    merged (one field given twice with different values: TypeError); a layer keyword that is no field of the
    architecture's config goes to its `layer_options` (the core's own options) where it has one; ssm_layer (None:
    no SSM) sets the architecture's core, ValueError listing the valid combinations where it takes none."""
    names = {f.name for f in dataclasses.fields(cls.Config)}
    fields = seed_fields(config)
    for key, value in seed_fields(architecture_kwargs or {}).items():
        merge_field(fields, key, value)
    options = dict(fields.pop("layer_options", None) or {})
    for key, value in seed_fields(layer_kwargs or {}).items():
        if key in names or "layer_options" not in names:
            merge_field(fields, key, value)
        else:
            merge_field(options, key, value)
    if options:
        fields["layer_options"] = options
    if ssm_layer is not _UNSET:
        if "ssm_layer" in names:
            fields["ssm_layer"] = "none" if ssm_layer is None else str(ssm_layer).lower()
        elif ssm_layer is not None:
            raise ValueError(f"'{cls.name}' takes no ssm_layer (got {ssm_layer!r}); valid combinations: "
                             f"{compositions_text()}")
    return cls.Config.from_dict(fields)


def create_model(
    name: str | None = None, ssm_layer: Any = _UNSET, *, architecture: str | None = None,
    layer_kwargs: dict[str, Any] | None = None, architecture_kwargs: dict[str, Any] | None = None, **config: Any,
) -> StreamingModel:
    """Build a model: `create_model("s4d", d_input=4, n_targets=1, horizon=8, d_model=64)`.

    Seed-style calls work too (the State Space Model Universal API): an architecture with a sequence core,
    `create_model(architecture="h3", ssm_layer="s4", d_model=64, d_state=16, num_layers=2)`,
    `create_model("h3", "s4", d_model=64)`, `create_model(architecture="gmlp", ssm_layer=None)` (no SSM),
    `create_model(architecture="ssm", ssm_layer="s4d")` (the plain stack), `create_model(architecture="transformer")`
    (the encoder–decoder), with `layer_kwargs` / `architecture_kwargs` and the seed's names (num_layers,
    init_method, expand_factor, num_heads, …). Unknown hyperparameters raise TypeError naming the valid ones;
    an invalid architecture × core combination raises ValueError listing the valid ones (`compositions()`).
    d_input, n_targets and horizon default to ModelConfig's when not given.
    """
    name, ssm_layer = _resolve_name(name, architecture, ssm_layer)
    cls = model_class(name)
    return build_model(cls, seed_config(cls, ssm_layer, layer_kwargs, architecture_kwargs, **config))


def model_from_config(name: str, config: dict[str, Any]) -> StreamingModel:
    """Rebuild a model from its registry name and `config.to_dict()` (as stored in bundles)."""
    cls = model_class(name)
    return build_model(cls, cls.Config.from_dict(config))
