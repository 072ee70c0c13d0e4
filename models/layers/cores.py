"""Sequence cores: the recurrent maps (B, L, C) → (B, L, C) with their own state that the architectures are built
around (H3's diagonal SSM, the gated MLP's SSM branch, the SSM inside the Mamba block), made by one factory,
`make_core(spec, channels)`, from the core's name and options (`CoreSpec`, read off an architecture's config).

A core has
    forward(u (B, L, C), state (B, *state_shape) | None, return_state) → (y (B, L, C), final state | None)
    step(u_t (B, C), state) → (y_t (B, C), new state)          pure, real arithmetic (exports to ONNX)
    state_shape                                                 per-cell shape of its one state tensor (None: none)
    bidirectional                                               True: offline only (non-causal: no state, no step)
and includes its D skip. The cores (N = d_state):

    s4     S4Kernel, DPLR (models.layers.s4)          state (C, N/2, 2)    init: any (legs); disc: bilinear
    s4d    S4DKernel, diagonal (models.layers.s4d)    state (2, N/2, C)    init: any (diag-lin); disc: zoh | bilinear
    s5     S5SSM, MIMO diagonal (models.layers.s5)    state (N/2, 2)       init: any (legs); disc: zoh | bilinear;
                                                                           options: blocks
    lru    LRURecurrence (models.layers.lru)          state (N, 2)         no A to init (a ring); options: r_min,
                                                                           r_max, max_phase
    mamba  SelectiveSSM (models.layers.selective)     state (N, C) | (2, N/2, C)   init: real | any other (complex);
                                                                           disc: zoh; options: dt_rank,
                                                                           dt_init_floor, chunk_size
    none   the identity (the gated MLP without an SSM: the seed's pure gated MLP)   no state

(default init in parentheses). s4 and s4d cores may be bidirectional (an anti-causal second kernel, offline use).
S5, LRU and the selective SSM mix the C channels (MIMO); S4 and S4D run C independent SSMs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from models.base import StateField
from models.layers.lru import LRUConfig, LRURecurrence, lru_ring_init
from models.layers.s4 import S4Kernel
from models.layers.s4d import S4DKernel
from models.layers.s5 import S5SSM, check_blocks
from models.layers.selective import SelectiveSSM
from models.layers.ssm_init import canonical_init
from models.layers.ssm_options import SSMOptions
from models.registry import compositions_text

CORE_NAMES = ("s4", "s4d", "s5", "lru", "mamba")
DEFAULT_INIT = {"s4": "legs", "s4d": "diag-lin", "s5": "legs", "lru": None, "mamba": "real", "none": None}
DISCRETIZATIONS = {"s4": ("bilinear",), "s4d": ("zoh", "bilinear"), "s5": ("zoh", "bilinear"), "lru": (None,),
                   "mamba": ("zoh",), "none": (None,)}
OPTIONS = {  # the core's own options (an architecture's `layer_options`) and their defaults
    "s4": {}, "s4d": {}, "s5": {"blocks": 1},
    "lru": {"r_min": LRUConfig.r_min, "r_max": LRUConfig.r_max, "max_phase": LRUConfig.max_phase},
    "mamba": {"dt_rank": "auto", "dt_init_floor": 1e-4, "chunk_size": 64}, "none": {},
}
BIDIRECTIONAL = ("s4", "s4d")
NO_A = ("lru", "none")  # cores without a continuous-time A: no init method


@dataclass(frozen=True)
class CoreSpec:
    """A core's name and options. `CoreSpec.of(config, arch)` reads and validates them from an architecture's config
    (fields ssm_layer, d_state, init, disc, dt_min, dt_max, ssm_lr, bidirectional, layer_options); init and disc
    None take the core's default. ValueError (TypeError for an unknown option) naming the problem."""

    name: str
    d_state: int
    init: str | None
    disc: str | None
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float | None = 1e-3
    bidirectional: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Any, arch: str, cores: tuple[str, ...]) -> CoreSpec:
        name = str(config.ssm_layer).lower()
        if name not in cores:
            raise ValueError(f"{arch} takes ssm_layer one of {cores}, got {config.ssm_layer!r}; valid combinations: "
                             f"{compositions_text()}")
        init = config.init if config.init is not None else DEFAULT_INIT[name]
        disc = config.disc if config.disc is not None else DISCRETIZATIONS[name][0]
        spec = cls(name, int(config.d_state), init, disc, config.dt_min, config.dt_max, config.ssm_lr,
                   bool(getattr(config, "bidirectional", False)), dict(config.layer_options or {}))
        return spec.checked()

    def checked(self) -> CoreSpec:
        """This spec with init canonical and the core's option defaults filled in, after validation."""
        name, N = self.name, self.d_state
        if name in NO_A and self.init is not None:
            raise ValueError(f"the {name} core has no continuous-time A to initialize (lru: its λ is drawn on a ring, "
                             f"options r_min, r_max, max_phase); init must be None, got {self.init!r}")
        init = canonical_init(self.init) if self.init is not None else None
        if self.disc not in DISCRETIZATIONS[name]:
            raise ValueError(f"disc must be one of {DISCRETIZATIONS[name]} for the {name} core, got {self.disc!r}")
        if self.bidirectional and name not in BIDIRECTIONAL:
            raise ValueError(f"bidirectional needs a convolutional core {BIDIRECTIONAL}, got {name!r}")
        unknown = sorted(set(self.options) - set(OPTIONS[name]))
        if unknown:
            raise TypeError(f"the {name} core has no option(s) {unknown}; its options: {sorted(OPTIONS[name])}")
        options = {**OPTIONS[name], **self.options}
        if name in ("s4", "s4d") and (N < 2 or N % 2):
            raise ValueError(f"d_state must be even and ≥ 2 for the {name} core, got {N}")
        if name == "s5":
            check_blocks(N, int(options["blocks"]))
        if name in ("lru", "mamba") and N < 1:
            raise ValueError(f"d_state must be ≥ 1, got {N}")
        if name == "mamba" and init != "real" and N % 2:
            raise ValueError(f"d_state must be even for a complex selective SSM (init {init!r}), got {N}")
        if name == "lru":
            lru_ring_init(1, options["r_min"], options["r_max"], options["max_phase"])  # ValueError on a bad ring
        self.ssm_options()  # ValueError naming a bad dt_min / dt_max / ssm_lr
        return CoreSpec(name, N, init, self.disc, self.dt_min, self.dt_max, self.ssm_lr, self.bidirectional, options)

    def ssm_options(self) -> SSMOptions:
        return SSMOptions(self.dt_min, self.dt_max, self.ssm_lr)


class IdentityCore(nn.Module):
    """The `none` core: y = u, no state (the gated MLP without an SSM)."""

    state_shape = None
    bidirectional = False

    def forward(self, u: Tensor, state: Tensor | None = None, return_state: bool = False) -> tuple[Tensor, None]:
        return u, None

    def step(self, u_t: Tensor, state: Tensor | None) -> tuple[Tensor, None]:
        return u_t, None


def make_core(spec: CoreSpec, channels: int) -> nn.Module:
    """The core `spec` names over `channels` channels (module docstring)."""
    opt, o, N = spec.ssm_options(), spec.options, spec.d_state
    n_dir = 2 if spec.bidirectional else 1
    if spec.name == "s4":
        return S4Kernel(channels, N, opt, n_dir, spec.init)
    if spec.name == "s4d":
        return S4DKernel(channels, N, spec.init, spec.disc, opt, n_dir)
    if spec.name == "s5":
        return S5SSM(channels, N, int(o["blocks"]), spec.disc, opt, spec.init)
    if spec.name == "lru":
        return LRURecurrence(channels, N, o["r_min"], o["r_max"], o["max_phase"], SSMOptions(ssm_lr=spec.ssm_lr))
    if spec.name == "mamba":
        return SelectiveSSM(channels, N, spec.init, opt, o["dt_rank"], o["dt_init_floor"], o["chunk_size"])
    if spec.name == "none":
        return IdentityCore()
    raise ValueError(f"unknown core {spec.name!r}; choose from {(*CORE_NAMES, 'none')}")


def core_of(layer_class: type | None) -> str | None:
    """The core a seed-style `ssm_layer_class` stands for (S4Layer → "s4", None → None: no SSM)."""
    if layer_class is None:
        return None
    core = getattr(layer_class, "core", None)
    if core is None:
        raise TypeError(f"{getattr(layer_class, '__name__', layer_class)} is no SSM layer class; pass one of "
                        "S4Layer, S4DLayer, S5Layer, LRULayer, MambaLayer (or None for no SSM)")
    return core


def core_state_fields(core: nn.Module, kind: str, name: str = "ssm", lead: tuple[int, ...] = ()) -> list[StateField]:
    """The layer's state field for its core (none for a stateless core), `lead` prepended to the core's shape.
    RuntimeError for a bidirectional core: it is non-causal, there is no state to stream."""
    if core.bidirectional:
        raise RuntimeError(f"{kind} with bidirectional=True is non-causal: it has no recurrent state or step; use "
                           "forward() over whole windows")
    return [] if core.state_shape is None else [StateField(name, (*lead, *core.state_shape))]
