"""One MS³M expert: a zoo model run at its own time scale s (models.ms3m).

Recurrent mode accumulates s inputs, steps the zoo model on their mean and holds its feature in between;
parallel mode pools the input stream into the same windows (aligned per batch element to its phase) and runs
the zoo model's own parallel forward over them, so both modes agree exactly. Per-expert state:
(phase (B, 1), acc (B, D), feature (B, F), *the zoo model's state).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.base import State, StateField
from models.registry import create_model


def select_rows(mask: Tensor, new: State, old: State) -> State:
    """Per batch row, `new` where mask (B,) is True, else `old` (tensors with the batch first)."""
    return tuple(torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b) for a, b in zip(new, old))


class Expert(nn.Module):
    """One expert: a zoo model producing a feature vector, run at time scale `scale`."""

    def __init__(self, spec: dict[str, Any], d_input: int, d_feature: int):
        super().__init__()
        self.kind, self.scale = spec["kind"], int(spec.get("scale", 1))
        cfg = {k: v for k, v in spec.items() if k in ("d_model", "n_layers")}
        cfg.update(spec.get("options", {}))
        # the zoo model's head with horizon 1 and d_feature "targets" is the expert's feature map
        self.net = create_model(self.kind, d_input=d_input, n_targets=d_feature, horizon=1, target_index=None, **cfg)

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.scale}"

    def state_spec(self, d_input: int, d_feature: int) -> list[StateField]:
        head = [StateField("phase", (1,)), StateField("acc", (d_input,)), StateField("feature", (d_feature,))]
        return head + self.net.state_spec()

    # -- recurrent -------------------------------------------------------------------------------
    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, Tensor, State]:
        """x_t (B, D), state → (feature (B, F), phase after the step (B, 1), new state)."""
        phase, acc, feat, *net_state = state
        s = self.scale
        acc = acc + x_t
        phase = phase + 1
        f_new, net_new = self.net.step(acc / s, tuple(net_state))
        f_new = f_new[:, 0]  # (B, F)
        if s == 1:
            zero = torch.zeros_like(phase)
            return f_new, zero, (zero, torch.zeros_like(acc), f_new, *net_new)
        ready = phase >= s - 0.5  # (B, 1)
        net_state = select_rows(ready[:, 0], net_new, net_state)
        feat = torch.where(ready, f_new, feat)
        acc = torch.where(ready, torch.zeros_like(acc), acc)
        phase = torch.where(ready, torch.zeros_like(phase), phase)
        return feat, phase, (phase, acc, feat, *net_state)

    # -- parallel --------------------------------------------------------------------------------
    def forward(self, x: Tensor, state: State) -> tuple[Tensor, Tensor, State]:
        """x (B, L, D), state → (held features (B, L, F), phase after each position (B, L, 1), final state).

        Windows are aligned per batch element to its phase; the expert's own parallel forward runs
        over the complete windows, and each position holds the output of the last completed window."""
        phase, acc, feat, *net_state = state
        B, L, D = x.shape
        s = self.scale
        if s == 1:
            f, net_final = self.net.forward_with_state(x, tuple(net_state))
            f = f[:, :, 0]
            zeros = torch.zeros(B, L, 1, dtype=x.dtype, device=x.device)
            return f, zeros, (phase * 0, acc * 0, f[:, -1], *net_final)
        p = phase[:, 0].round().long()  # (B,) samples already accumulated in the open window
        # extended index e = t + p: window k covers e ∈ [k·s, (k+1)·s)
        n_win = (L + s - 1) // s + 1
        Le = n_win * s
        e = torch.arange(Le, device=x.device)
        t = e.unsqueeze(0) - p.unsqueeze(1)  # (B, Le) real position of each extended index
        valid = (t >= 0) & (t < L)
        xe = torch.gather(x, 1, t.clamp(0, L - 1).unsqueeze(-1).expand(B, Le, D)) * valid.unsqueeze(-1)
        sums = xe.view(B, n_win, s, D).sum(2)  # (B, n_win, D)
        sums = torch.cat([sums[:, :1] + acc.unsqueeze(1), sums[:, 1:]], 1)
        complete = torch.div(L + p, s, rounding_mode="floor")  # (B,) windows completed in this chunk
        k_min, k_max = int(complete.min()), int(complete.max())
        net_state = tuple(net_state)
        feats = []
        if k_min > 0:
            f, net_state = self.net.forward_with_state(sums[:, :k_min] / s, net_state)
            feats.append(f[:, :, 0])
        if k_max > k_min:  # some elements complete one more window: one step, kept only for them
            f_extra, net_extra = self.net.step(sums[:, k_min] / s, net_state)
            net_state = select_rows(complete > k_min, net_extra, net_state)
            feats.append(f_extra[:, 0].unsqueeze(1))
        # held output at position t: window k(t) = floor((t + p + 1) / s) − 1, or the initial feature
        pos = torch.arange(L, device=x.device).unsqueeze(0)  # (1, L)
        k_t = torch.div(pos + p.unsqueeze(1) + 1, s, rounding_mode="floor") - 1  # (B, L)
        table = torch.cat([feat.unsqueeze(1), *feats], 1)  # (B, 1 + k_max, F): index 0 = initial
        held = torch.gather(table, 1, (k_t + 1).unsqueeze(-1).expand(B, L, table.shape[-1]))
        phase_t = torch.remainder(pos + p.unsqueeze(1) + 1, s).to(x.dtype).unsqueeze(-1)  # (B, L, 1)
        # open window after the chunk: the sum of its real samples (plus acc if no window completed)
        # (acc was folded into window 0, so this is right also when no window completed)
        new_acc = sums.gather(1, complete.view(B, 1, 1).expand(B, 1, D))[:, 0]
        new_feat = held[:, -1]
        new_phase = phase_t[:, -1]
        return held, phase_t, (new_phase, new_acc, new_feat, *net_state)
