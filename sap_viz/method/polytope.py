"""The safety polytope: concept encoder + K linear facets over hidden states.

``f = ReLU(W·norm(h) + b)`` (or ``f = norm(h)`` for the linear variant), ``v_k = φ_k·f − ξ_k``.
A state is safe iff every ``v_k < 0``; ``score = max_k v_k`` is the continuous unsafety score.

``norm`` standardises h with the training features' mean and std. The reference code feeds raw
residual states; on SmolLM2 a few residual dimensions are orders of magnitude larger than the rest, which makes
Adam at lr 0.01 ignore most of the space. The statistics are stored with the polytope, so scoring
and steering see exactly the function that was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sap_viz.errors import UserError


class SafetyPolytope(nn.Module):
    def __init__(self, d_model: int, num_facets: int = 14, feature_dim: int | None = 16384, encoder: str = "relu"):
        super().__init__()
        if num_facets < 1:
            raise UserError(f"num_facets must be ≥ 1, got {num_facets}")
        if encoder not in ("relu", "linear"):
            raise UserError(f"encoder must be 'relu' or 'linear', got {encoder!r}")
        self.encoder_kind = encoder
        self.d_model = d_model
        width = d_model if encoder == "linear" else int(feature_dim or 16384)
        self.feature_dim = width
        self.num_facets = num_facets
        self.register_buffer("mean", torch.zeros(d_model))
        self.register_buffer("std", torch.ones(d_model))
        if encoder == "relu":
            self.encoder = nn.Linear(d_model, width)
            nn.init.xavier_uniform_(self.encoder.weight)
            nn.init.zeros_(self.encoder.bias)
        else:
            self.encoder = nn.Identity()
        self.phi = nn.Parameter(torch.empty(num_facets, width))
        nn.init.xavier_uniform_(self.phi)
        self.xi = nn.Parameter(torch.zeros(num_facets))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def standardize(self, h: torch.Tensor) -> torch.Tensor:
        """``(h − mean) / std``: the space the encoder, Safe Flow's optimiser and the feature map work in."""
        return (h.to(self.mean.device, self.mean.dtype) - self.mean) / self.std

    def unstandardize(self, z: torch.Tensor) -> torch.Tensor:
        """Back from the standardised space to residual-stream coordinates."""
        return z * self.std + self.mean

    def concepts(self, h: torch.Tensor) -> torch.Tensor:
        x = self.standardize(h)
        return torch.relu(self.encoder(x)) if self.encoder_kind == "relu" else x

    def violations_from_concepts(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.phi.T - self.xi

    def violations(self, h: torch.Tensor) -> torch.Tensor:
        """Per-facet violations ``v`` (… × K) for hidden states ``h`` (… × d)."""
        return self.violations_from_concepts(self.concepts(h))

    forward = violations

    def score(self, h: torch.Tensor) -> torch.Tensor:
        return self.violations(h).max(dim=-1).values

    @torch.no_grad()
    def with_fixed_tail(self, tail: torch.Tensor) -> FixedTail:
        """For inputs ``[h ‖ tail]`` whose tail (B × t, e.g. a request mean) stays fixed for a whole call: its part of
        the first layer computed once, so each new state costs only its own half (``FixedTail.violations``)."""
        d = self.d_model - tail.shape[-1]
        z = (tail.to(self.mean.device, self.mean.dtype) - self.mean[d:]) / self.std[d:]
        first = self.encoder.weight if self.encoder_kind == "relu" else self.phi
        part = z @ first[:, d:].T + (self.encoder.bias if self.encoder_kind == "relu" else -self.xi)
        return FixedTail(self.mean[:d], self.std[:d], first[:, :d].T.contiguous(), part,
                         self.phi.T.contiguous() if self.encoder_kind == "relu" else None, self.xi)

    @torch.no_grad()
    def violations_cpu(self, h: torch.Tensor) -> torch.Tensor:
        """Violations of (CPU) features wherever the polytope lives, returned on the CPU for reports."""
        return self.violations(h).cpu()


@dataclass(frozen=True)
class FixedTail:
    """A polytope's facet values for ``[h ‖ tail]`` with the tail's part precomputed (``SafetyPolytope.with_fixed_tail``).

    Why: a last+mean polytope reads every generated state beside the request's mean, which is fixed once the prompt is
    read; recomputing its half of the first layer at every token doubled the monitor's own cost.
    """

    mean: torch.Tensor  # d
    std: torch.Tensor  # d
    head: torch.Tensor  # d × width: the first layer's weights on the state's half
    part: torch.Tensor  # B × width: the tail's contribution (and the bias)
    phi_t: torch.Tensor | None  # width × K for a relu encoder; None for a linear one (the first layer is the facets)
    xi: torch.Tensor  # K

    def violations(self, h: torch.Tensor) -> torch.Tensor:
        """B × S × K for states ``h`` (B × S × d), equal to ``violations([h ‖ tail])`` up to float rounding."""
        pre = ((h.to(self.mean.device, self.mean.dtype) - self.mean) / self.std) @ self.head + self.part[:, None, :]
        return pre if self.phi_t is None else torch.relu(pre) @ self.phi_t - self.xi
