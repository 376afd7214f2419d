"""Safe Flow: move a hidden state back inside the polytope with as small an edit as possible.

Minimises ``‖h − h₀‖₁/d + α·Σ_k v_k(h) + β·Σ_k relu(v_k(h) + s)`` with the encoder frozen
(docs/method.md, §7 Steering, minimal Safe Flow). Unlike the reference (one SGD step, batch size 1) we iterate Adam until every
facet holds with depth ``s`` (the *strength*) or ``max_steps`` is reached, on whole batches where
only violating rows move, and keep h₀ for a row whose loss is not finite. The optimisation runs in
the polytope's standardised coordinates so one learning rate fits every residual dimension.

Strength is a depth in the polytope's violation units, where shipped polytopes are scaled so that
a typical safe training prompt scores −1: strength 1 moves a state as far inside as a typical safe
prompt sits. Just crossing the boundary (the reference's behaviour) rarely changes what SmolLM2
says; docs/steering_strength.md has the measured strength sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sap_viz.errors import UserError
from sap_viz.method.polytope import SafetyPolytope


@dataclass(frozen=True)
class SafeFlowConfig:
    strength: float = 3.0  # target depth s: stop once every v_k ≤ −s
    hinge_weight: float = 1.0  # β: weight of the hinge on facets above −s
    alpha: float = 1e-4  # α: weight of the summed violations (pushes deeper inside)
    max_steps: int = 200
    lr: float = 0.1

    def validate(self) -> None:
        if not 0 <= self.strength <= 100:
            raise UserError(f"strength must be between 0 and 100, got {self.strength}")
        if not 0 < self.hinge_weight <= 1e4:
            raise UserError(f"hinge_weight must be in (0, 10000], got {self.hinge_weight}")
        if not 1 <= self.max_steps <= 10000:
            raise UserError(f"max_steps must be in [1, 10000], got {self.max_steps}")
        if not 0 < self.lr <= 100 or self.alpha < 0:
            raise UserError("lr must be in (0, 100] and alpha ≥ 0")


@dataclass
class SteerOutcome:
    hidden: torch.Tensor  # n × d, steered (rows that needed no change are h₀)
    before: torch.Tensor  # n × K
    after: torch.Tensor  # n × K
    steered: torch.Tensor  # n bool: rows that were outside and got changed
    steps: torch.Tensor  # n int
    delta_norm: torch.Tensor  # n, ‖h − h₀‖₂


def safe_flow(
    poly: SafetyPolytope, h0: torch.Tensor, cfg: SafeFlowConfig = SafeFlowConfig(), threshold: float | torch.Tensor = 0.0,
    editable: int | None = None,
) -> SteerOutcome:
    """Steer the rows of ``h0`` (n × d) whose max violation is ≥ ``threshold`` (a number or one per row); leave the others bit-identical.

    ``editable``: only the first ``editable`` coordinates move (a polytope whose input carries a fixed
    request mean after the state); default all.
    """
    with torch.no_grad():
        h0f = h0.detach().float()
        before = poly.violations(h0f)
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.to(before.device)
    outside = before.max(dim=1).values >= threshold
    hidden, after = h0f.clone(), before.clone()
    steps = torch.zeros(len(h0f), dtype=torch.long, device=h0f.device)
    if outside.any():
        idx = torch.nonzero(outside).squeeze(1)
        start = h0f[idx]
        z0 = poly.standardize(start)
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=cfg.lr)
        active = torch.ones(len(idx), dtype=torch.bool, device=h0f.device)
        d = editable or h0f.shape[1]  # the L1 term is per moving coordinate
        with torch.enable_grad():
            for step in range(cfg.max_steps):
                h = poly.unstandardize(z)
                v = poly.violations(h)
                done = (v.max(dim=1).values <= -cfg.strength).detach()
                active &= ~done
                steps[idx[active]] = step + 1
                if not active.any():
                    break
                per_row = (
                    (h - start).abs().sum(dim=1) / d + cfg.alpha * v.sum(dim=1) + cfg.hinge_weight * torch.relu(v + cfg.strength).sum(dim=1)
                )
                loss = (per_row * active).sum()
                opt.zero_grad()
                loss.backward()
                with torch.no_grad():
                    z.grad[~active] = 0  # finished rows stay where they are
                    if editable is not None:
                        z.grad[:, editable:] = 0
                opt.step()
        with torch.no_grad():
            result = poly.unstandardize(z.detach())
            bad = ~torch.isfinite(result).all(dim=1)
            result[bad] = start[bad]
            if editable is not None:
                result[:, editable:] = start[:, editable:]  # exactly, not through the standardisation round trip
            hidden[idx] = result
            after[idx] = poly.violations(result)
    delta = (hidden - h0f).norm(dim=1)
    return SteerOutcome(hidden.to(h0.dtype), before, after, outside & (delta > 0), steps, delta)
