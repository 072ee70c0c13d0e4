"""NSM: Neural State Machine (the "Beyond Transformer: Neural State Machines" seed) under the streaming contract.

The seed keeps s explicit state nodes (s ≪ sequence length) and, per token, routes the token to the nodes
(TokenToStateRouter: learned attention, softmax over nodes), updates each node with GRU- or LSTM-style gates
(StatePropagator: update / retain / reset), lets the nodes talk by multi-head self-attention among them, combines
the token-to-state routing with content-based attention (HybridAttention) and reads the output from the nodes;
a StateManager holds a learnable importance per node, prunes nodes whose importance falls below a threshold and
allocates new ones up to max_states. Cost O(n·s) in the sequence length n; the nodes are inspectable.

Per layer, with token u_t (B, d), nodes S (B, s, d) (LSTM: also cells C), importance g_i = σ(ℓ_i) and
b_i = log g_i on active nodes, −∞ on inactive ones (so every softmax over nodes gives them exactly zero weight):

    w_t   = softmax_i((W_q u_t) · (S_i + e_i) / √d + b_i)                     routing (e_i: learned node key)
    M     = MHA(S) among nodes, keys biased by b                              communication (optional)
    S̃_i   = GRU_i(W_x u_t + W_m M_i + β_i, S_i)    (LSTM_i: (S̃_i, C̃_i))      gated update of node i
    S'_i  = S_i + w_t,i (S̃_i − S_i)                                           routed write (LSTM: C' alike)
    c_t   = softmax_i((W_r u_t) · S'_i / √d + b_i)                            content attention (hybrid)
    a_t   = λ w_t + (1 − λ) c_t,     y_t = W_o Σ_i a_t,i g_i S'_i              readout, λ = σ(learned)

then the pre-norm residual stack of the zoo (h ← h + y over n_layers) and a ForecastHead (last-value residual).
State per cell: each layer's bank, nodes (s, d) and, for the LSTM propagator, cells (s, d); s = max_states, fixed,
so the step exports; `export_form()` drops the inactive nodes (a smaller bank, the same function).

Where this differs from the seed, and why:
- The routing weight scales the whole gated update (S' = S + w (S̃ − S)) rather than only the input: a node the
  token is not routed to retains its state, and an inactive node (w = 0) keeps it bit for bit, so pruned nodes
  influence nothing and their state rows can be dropped. With one active node this is the plain GRU / LSTM.
- Communication reads the nodes before the update and enters each node's gates as a message (W_m M_i), instead of
  a residual added after it: one state-to-state attention per token, and the nodes stay bounded (a GRU node is a
  convex mix of its state and tanh values).
- The importance acts absolutely: log g_i biases every softmax over nodes and g_i scales the node's readout. A
  softmax alone is shift-invariant, so importances that only biased it could all sink below the threshold with no
  change of the output; here a node of low importance receives, sends and contributes little, so pruning it is
  nearly free. During training with pruning on, `importance_l1` × the mean importance of active nodes is an
  auxiliary loss (training_forward), pushing unused nodes down.
- The active mask is a registered buffer of the model (the same for every cell, constant in the exported graph),
  not part of the per-cell state: checkpoints carry it, clients cannot corrupt it, and it costs no state bytes.
- Pruning / allocation (`training_event`, every `prune_every` optimizer steps; also allocation when validation
  plateaus) returns a training phase: the node set is a new architecture, so early stopping and the best
  checkpoint restart and the final model (and the bundle's node count) is the last node set's best.
- Communication is optional and off by default: it is the only O(s²) part and, in eager PyTorch at the test sizes,
  it makes a training step ~2.4× as expensive (0.41 s vs 0.17 s CPU for 8 × 160 tokens, d_model 16); turn it on
  with `--set enable_communication=true`. Both settings are tested (tests/models/test_nsm.py).
- The parallel forward runs layer by layer, each a sequential loop over time (the recurrence is nonlinear); the
  token-side projections and the readout, which do not feed back, run batched over the whole sequence. `step` is
  one iteration of the same per-token cell.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel, split_state
from models.registry import register
from models.seeds.nsm_parts import HybridAttention, StateAttention, StateManager, StatePropagator, TokenToStateRouter

PROPAGATORS = ("gru", "lstm")


@dataclass
class NSMConfig(ModelConfig):
    d_model: int = 32  # width of the token stream and of every state node (seed: state_dim)
    n_layers: int = 2
    n_states: int = 8  # active nodes per layer at the start (seed: num_states / initial_states)
    max_states: int = 16  # nodes per layer's bank: the most that can be active (seed: max_states)
    propagator: str = "gru"  # node update gates: gru | lstm (seed: gate_type)
    enable_communication: bool = False  # multi-head self-attention among the nodes (off by default: see below)
    n_heads: int = 4  # heads of that attention (seed: num_heads); must divide d_model
    hybrid_attention: bool = True  # readout mixes the routing weights with content attention over the nodes
    importance_init: float = 0.5  # importance g = σ(logit) of a new node
    importance_l1: float = 1e-3  # auxiliary loss weight of the mean importance of active nodes (pruning on only)
    prune_threshold: float = 0.1  # at a check, active nodes of importance below this are pruned (≥ 1 kept)
    prune_every: int = 0  # optimizer steps between prune / allocate checks (0: a fixed node set, no schedule)
    allocate_threshold: float = 0.9  # at a check, a layer whose active nodes all have importance ≥ this gets one
    grow_on_plateau: bool = True  # a validation plateau allocates one node per layer (prune_every > 0 only)
    bank_sizes: tuple[int, ...] | None = None  # per-layer bank sizes of a compacted model (export_form); None:
    # max_states in every layer

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model < 1 or self.n_layers < 1:
            raise ValueError(f"d_model and n_layers must be ≥ 1, got {self.d_model}, {self.n_layers}")
        if not 1 <= self.n_states <= self.max_states:
            raise ValueError(f"need 1 ≤ n_states ≤ max_states, got n_states={self.n_states}, "
                             f"max_states={self.max_states}")
        if self.propagator not in PROPAGATORS:
            raise ValueError(f"propagator must be one of {PROPAGATORS}, got {self.propagator!r}")
        if self.enable_communication and (self.n_heads < 1 or self.d_model % self.n_heads):
            raise ValueError(f"n_heads must be ≥ 1 and divide d_model ({self.d_model}), got {self.n_heads}")
        if not 0.0 < self.importance_init < 1.0:
            raise ValueError(f"importance_init must be in (0, 1), got {self.importance_init}")
        if not 0.0 <= self.prune_threshold < 1.0:
            raise ValueError(f"prune_threshold must be in [0, 1), got {self.prune_threshold}")
        if self.importance_l1 < 0 or self.prune_every < 0:
            raise ValueError("importance_l1 and prune_every must be ≥ 0")
        if self.bank_sizes is not None:
            self.bank_sizes = tuple(int(n) for n in self.bank_sizes)
            if len(self.bank_sizes) != self.n_layers or any(not 1 <= n <= self.max_states for n in self.bank_sizes):
                raise ValueError(f"bank_sizes needs n_layers ({self.n_layers}) entries in [1, max_states="
                                 f"{self.max_states}], got {self.bank_sizes}")

    def bank(self, layer: int) -> int:
        """Nodes in layer `layer`'s bank."""
        return self.bank_sizes[layer] if self.bank_sizes is not None else self.max_states


class LayerTrace(NamedTuple):
    routing: Tensor  # (B, L, s) or (B, s): token-to-state routing weights
    readout: Tensor  # same shape: the readout's weights a


class NSMLayer(nn.Module):
    """One NSM layer over a bank of `bank` nodes. u (B, L, d) → y (B, L, d); state (nodes (B, s, d)[, cells
    (B, s, d)]). `PER_NODE` names the tensors with one row per node (what compaction selects)."""

    PER_NODE = ("manager.importance_logit", "manager.active", "router.node_key", "propagator.node_bias")

    def __init__(self, config: NSMConfig, bank: int):
        super().__init__()
        c = config
        self.d_model, self.bank, self.lstm = c.d_model, bank, c.propagator == "lstm"
        self.manager = StateManager(bank, min(c.n_states, bank), c.importance_init)
        self.router = TokenToStateRouter(c.d_model, bank)
        self.communication = StateAttention(c.d_model, c.n_heads, bank) if c.enable_communication else None
        self.propagator = StatePropagator(c.d_model, bank, c.propagator, messages=c.enable_communication)
        self.readout = HybridAttention(c.d_model, c.hybrid_attention)

    def state_spec(self) -> list[StateField]:
        shape = (self.bank, self.d_model)
        return [StateField("nodes", shape)] + ([StateField("cells", shape)] if self.lstm else [])

    def _project(self, u: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Token-side projections, u (..., d) → router query (..., d) and node-key logits (..., s), gate input
        (..., G), readout query (..., d) or None."""
        q, key_logits = self.router.prepare(u, bias)
        qr = self.readout.query(u) if self.readout.query is not None else None
        return q, key_logits, self.propagator.inp(u), qr

    def _state_weights(self, bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per call (not per token): the propagator's hid and the attention's qkv as one (G [+ 3d], d) product on
        the nodes, one GEMM per token instead of two; and the attention mask (1, 1, 1, s)."""
        hid = self.propagator.hid
        if self.communication is None:
            return hid.weight, hid.bias, bias
        qkv = self.communication.qkv
        return torch.cat([hid.weight, qkv.weight]), torch.cat([hid.bias, qkv.bias]), bias.view(1, 1, 1, -1)

    def _cell(self, q: Tensor, key_logits: Tensor, x: Tensor, state: State,
              weights: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, State]:
        """One token through the recurrence: q (B, d), key_logits (B, s), x (B, G), state, _state_weights →
        routing weights (B, s), new state."""
        S, C = state[0], (state[1] if self.lstm else None)
        w = self.router(q, key_logits, S)  # (B, s)
        gh, M = F.linear(S, weights[0], weights[1]), None  # (B, s, G [+ 3d])
        if self.communication is not None:
            gh, qkv = gh.split([self.propagator.hid.out_features, 3 * self.d_model], dim=-1)
            M = self.communication(qkv, weights[2])  # (B, s, d)
        S, C = self.propagator(x, gh, S, C, w, M)
        return w, ((S, C) if self.lstm else (S,))

    def forward(self, u: Tensor, state: State) -> tuple[Tensor, State, LayerTrace]:
        """u (B, L, d), state → y (B, L, d), final state, per-position routing and readout weights (B, L, s)."""
        bias, g = self.manager.node_bias(), self.manager.importance()
        q, kl, x, qr = self._project(u, bias)  # (B, L, ·), batched over time
        weights = self._state_weights(bias)
        ws, nodes = [], []
        for q_t, kl_t, x_t in zip(q.unbind(1), kl.unbind(1), x.unbind(1)):  # the nonlinear recurrence: sequential
            # (unbind rather than indexing by t: its backward is one stack, not a zero-filled copy per position)
            w, state = self._cell(q_t, kl_t, x_t, state, weights)
            ws.append(w)
            nodes.append(state[0])
        w, S = torch.stack(ws, 1), torch.stack(nodes, 1)  # (B, L, s), (B, L, s, d)
        y, a = self.readout(qr, w, S, g, bias)  # batched over time
        return y, state, LayerTrace(w, a)

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State, LayerTrace]:
        """u_t (B, d), state → y_t (B, d), new state, routing and readout weights (B, s). Pure."""
        bias, g = self.manager.node_bias(), self.manager.importance()
        q, kl, x, qr = self._project(u_t, bias)
        w, state = self._cell(q, kl, x, state, self._state_weights(bias))
        y, a = self.readout(qr, w, state[0], g, bias)
        return y, state, LayerTrace(w, a)

    @torch.no_grad()
    def allocate_node(self, generator: torch.Generator) -> int | None:
        """Activate a free node with fresh node parameters (key, gate bias, initial importance); its index or None."""
        i = self.manager.allocate()
        if i is not None:
            key, nb = self.router.node_key, self.propagator.node_bias
            key[i] = torch.randn(key.shape[1], generator=generator).to(key)
            nb[i] = 0.1 * torch.randn(nb.shape[1], generator=generator).to(nb)
        return i


class NSMOutput(NamedTuple):
    y: Tensor  # (B, L, H, K) or (B, H, K) for a step
    routing: list[Tensor]  # per layer: token-to-state routing weights (B, L, s) or (B, s)
    readout: list[Tensor]  # per layer: readout weights, same shapes
    importance: list[Tensor]  # per layer: node importance (s,), 0 on inactive nodes
    state: State


@register("nsm")
class NSM(StreamingModel):
    """Neural state machine forecaster: input projection → n_layers pre-norm residual NSM layers → norm → head.
    x (B, L, D_in) → y (B, L, H, K)."""

    sequential_forward = True  # the gated node update is a loop over time

    Config = NSMConfig

    def __init__(self, config: NSMConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.encoder = nn.Linear(config.d_input, d)
        self.layers = nn.ModuleList(NSMLayer(config, config.bank(k)) for k in range(config.n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(config.n_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.final_norm = nn.LayerNorm(d)
        self.head = ForecastHead(d, config.horizon, config.n_targets, config.target_index)

    # -- state ---------------------------------------------------------------------------------
    def state_spec(self) -> list[StateField]:
        return [StateField(f"layer{k}.{f.name}", f.shape) for k, layer in enumerate(self.layers)
                for f in layer.state_spec()]

    def _layer_states(self, state: State) -> list[State]:
        return split_state(state, [len(layer.state_spec()) for layer in self.layers])

    # -- the contract --------------------------------------------------------------------------
    def forward_detailed(self, x: Tensor, state: State | None = None) -> NSMOutput:
        """x (B, L, D_in), state or None (zero) → forecasts, per-layer routing / readout weights (B, L, s) and
        importances, the final state."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        h = self.encoder(x)  # (B, L, d)
        new_state, routing, readout = [], [], []
        for layer, norm, s in zip(self.layers, self.norms, self._layer_states(state)):
            z, s, trace = layer(norm(h), s)  # layer by layer, each over the whole sequence
            h = h + self.dropout(z)
            new_state.extend(s)
            routing.append(trace.routing)
            readout.append(trace.readout)
        return NSMOutput(self.head(self.final_norm(h), x), routing, readout, self.importances(), tuple(new_state))

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        out = self.forward_detailed(x, state)
        return out.y, out.state

    def step_detailed(self, x_t: Tensor, state: State) -> NSMOutput:
        """x_t (B, D_in), state → the step's forecast (B, H, K), routing / readout weights (B, s), importances,
        new state. Pure."""
        h = self.encoder(x_t)  # (B, d)
        new_state, routing, readout = [], [], []
        for layer, norm, s in zip(self.layers, self.norms, self._layer_states(state)):
            z, s, trace = layer.step(norm(h), s)
            h = h + self.dropout(z)
            new_state.extend(s)
            routing.append(trace.routing)
            readout.append(trace.readout)
        return NSMOutput(self.head(self.final_norm(h), x_t), routing, readout, self.importances(), tuple(new_state))

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        out = self.step_detailed(x_t, state)
        return out.y, out.state

    # -- interpretability ----------------------------------------------------------------------
    def routing_weights(self, x: Tensor, state: State | None = None) -> list[Tensor]:
        """Per layer, the (B, L, s) token-to-state routing weights over x (sum 1 over active nodes, 0 elsewhere)."""
        return self.forward_detailed(x, state).routing

    def importances(self) -> list[Tensor]:
        """Per layer, node importance g (s,), 0 on inactive nodes."""
        return [layer.manager.importance() for layer in self.layers]

    def active_states(self) -> list[int]:
        return [layer.manager.n_active() for layer in self.layers]

    # -- training schedule ---------------------------------------------------------------------
    def training_forward(self, x: Tensor, state: State | None = None,
                         last_only: bool = False) -> tuple[Tensor, dict[str, Tensor], State]:
        """The forecasts, plus (pruning on, importance_l1 > 0) the auxiliary term importance_l1 × the mean over
        layers of the active nodes' mean importance, which pushes nodes the forecast does not need down."""
        y, new_state = self.forward_with_state(x, state)
        aux = {}
        c = self.config
        if c.prune_every > 0 and c.importance_l1 > 0:
            means = [layer.manager.importance().sum() / layer.manager.n_active() for layer in self.layers]
            aux["importance"] = c.importance_l1 * torch.stack(means).mean()
        return (y[:, -1:] if last_only else y), aux, new_state

    @torch.no_grad()
    def training_event(self, step: int, plateau: bool) -> dict[str, Any] | None:
        """Every prune_every steps: in each layer, prune active nodes of importance < prune_threshold (≥ 1 kept);
        a layer that pruned nothing and whose active nodes all reach allocate_threshold gets one more node. On a
        plateau (grow_on_plateau): one more node in every layer with room. When the node set changed, returns
        {"phase": "prune" | "grow" | "prune+grow", "pruned": [[node, …] per layer], "allocated": [...],
        "active": total active nodes, "active_per_layer": [...]}; otherwise None (a plateau then ends training)."""
        c = self.config
        if c.prune_every <= 0:
            return None
        check = step > 0 and step % c.prune_every == 0
        grow = plateau and c.grow_on_plateau
        if not (check or grow):
            return None
        pruned, allocated = [], []
        for k, layer in enumerate(self.layers):
            m = layer.manager
            p = m.prune(c.prune_threshold) if check else []
            busy = check and not p and bool((torch.sigmoid(m.importance_logit)[m.active] >= c.allocate_threshold).all())
            new = None
            if grow or busy:
                new = layer.allocate_node(torch.Generator().manual_seed(1_000_003 * step + 1_009 * k))
            pruned.append(p)
            allocated.append([new] if new is not None else [])
        if not any(pruned) and not any(allocated):
            return None
        active = self.active_states()
        phase = "+".join(name for name, done in (("prune", any(pruned)), ("grow", any(allocated))) if done)
        return {"phase": phase, "pruned": pruned, "allocated": allocated, "active": sum(active),
                "active_per_layer": active}

    # -- export --------------------------------------------------------------------------------
    def _active_index(self) -> list[Tensor]:
        return [layer.manager.active.nonzero().flatten() for layer in self.layers]

    def export_form(self) -> NSM:
        """The same function on banks of the active nodes only (a smaller state); the model itself when every
        node of every bank is active."""
        keep = self._active_index()
        sizes = tuple(len(i) for i in keep)
        if all(n == layer.bank for n, layer in zip(sizes, self.layers)):
            return self
        cfg = dataclasses.replace(self.config, n_states=max(sizes), max_states=max(sizes), bank_sizes=sizes)
        ref = next(self.parameters())
        compact = type(self)(cfg).to(device=ref.device, dtype=ref.dtype)
        sd = self.state_dict()
        for k, idx in enumerate(keep):
            for name in NSMLayer.PER_NODE:
                sd[f"layers.{k}.{name}"] = sd[f"layers.{k}.{name}"][idx]
        compact.load_state_dict(sd)
        return compact.train(self.training)

    def compact_state(self, state: State) -> State:
        """A state of this model → the state of its export_form (the active nodes' rows)."""
        out = []
        for s, idx in zip(self._layer_states(state), self._active_index()):
            out.extend(t[:, idx] for t in s)
        return tuple(out)

    def describe(self) -> dict[str, Any]:
        c = self.config
        active = self.active_states()
        return {"active_states": active, "active_total": sum(active), "max_states": c.max_states,
                "bank_sizes": [layer.bank for layer in self.layers], "propagator": c.propagator,
                "communication": c.enable_communication, "hybrid_attention": c.hybrid_attention,
                "node_importance": [[round(float(v), 4) for v in g[layer.manager.active].detach()]
                                    for g, layer in zip(self.importances(), self.layers)]}


NeuralStateMachine = NSM  # the seed's entry point

__all__ = [
    "NSM",
    "HybridAttention",
    "NSMConfig",
    "NSMLayer",
    "NSMOutput",
    "NeuralStateMachine",
    "StateAttention",
    "StateManager",
    "StatePropagator",
    "TokenToStateRouter",
]
