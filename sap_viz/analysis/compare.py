"""Two polytopes side by side: the same prompts' facet violations, the same metrics, and which facet of
one corresponds to which facet of the other.

Correspondence is read two ways. **Cosine of normals**: a facet's normal in hidden-state space is the
mean gradient of its violation over a shared probe set (for a linear encoder, exactly φ_k W / σ;
for the ReLU encoder, the average over the states the probe set visits), with the polytope's mean
normal removed (``centred``). It only means something when both polytopes read the same layer at the same position.
**Co-firing**: the Jaccard overlap of the probe prompts on which each facet fires (v ≥ 0); it works
across layers and encoders, and says whether two facets flag the same prompts, whatever their geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sap_viz.analysis.metrics import detection_metrics
from sap_viz.method.polytope import SafetyPolytope


def effective_normals(poly: SafetyPolytope, feats: torch.Tensor) -> torch.Tensor:
    """K × d unit vectors: the mean over ``feats`` (N × d hidden states) of ∂v_k/∂h."""
    h = feats.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        viol = poly.violations(h)  # N × K
        normals = [torch.autograd.grad(viol[:, k].sum(), h, retain_graph=k + 1 < viol.shape[1])[0].mean(0)
                   for k in range(viol.shape[1])]
    out = torch.stack(normals)
    return out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)


def centred(normals: torch.Tensor) -> torch.Tensor:
    """Unit normals with the polytope's mean normal removed (kept as they are for a single facet).

    The ReLU encoder's facets share one dominant direction in hidden-state space (on the shipped
    polytope the raw normals' pairwise cosines average 0.97), so raw cosines match every facet to
    every other; what tells facets apart is what is left after that shared direction.
    """
    if len(normals) < 2:
        return normals
    rest = normals - normals.mean(0, keepdim=True)
    return rest / rest.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cofiring(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """K_a × K_b Jaccard overlap of the prompts on which facet i of A and facet j of B fire (v ≥ 0)."""
    fa, fb = (a >= 0).float(), (b >= 0).float()
    both = fa.T @ fb
    either = fa.sum(0)[:, None] + fb.sum(0)[None, :] - both
    return torch.where(either > 0, both / either.clamp_min(1), torch.zeros_like(both)).numpy()


@dataclass
class PolytopeComparison:
    names: tuple[str, str]
    layers: tuple[int, int]
    facet_names: tuple[list[str], list[str]]
    violations: tuple[torch.Tensor, torch.Tensor]  # N × K_a and N × K_b on the probe prompts
    unsafe: np.ndarray  # N, the probe prompts' labels
    cosine: np.ndarray | None  # K_a × K_b; None when the layers differ (normals in different spaces)
    cofire: np.ndarray  # K_a × K_b

    def matches(self) -> list[dict]:
        """For each facet of A: its best match in B by cosine of normals and by co-firing."""
        rows = []
        fires_a = (self.violations[0] >= 0).float().mean(0)
        for i, name in enumerate(self.facet_names[0]):
            row = {"facet of A": f"{i}: {name}", "fires on (A)": round(float(fires_a[i]), 3)}
            if self.cosine is not None:
                j = int(np.argmax(self.cosine[i]))
                row.update({"closest in B by normal": f"{j}: {self.facet_names[1][j]}", "cosine": round(float(self.cosine[i, j]), 3)})
            j = int(np.argmax(self.cofire[i]))
            overlap = float(self.cofire[i, j])
            row.update({"most co-firing in B": f"{j}: {self.facet_names[1][j]}" if overlap > 0 else "(none fires with it)",
                        "co-firing (Jaccard)": round(overlap, 3)})
            rows.append(row)
        return rows

    def metric_rows(self) -> list[dict]:
        """Detection metrics of both polytopes on the same probe prompts (threshold 0, unsafe = positive)."""
        rows = []
        for name, viol in zip(self.names, self.violations, strict=True):
            m = detection_metrics(self.unsafe, viol.max(dim=1).values.numpy())
            rows.append({"polytope": name, "layer": self.layers[self.names.index(name)], "facets": viol.shape[1],
                         "probe prompts": m["n"], "recall": m["recall"], "fpr": m["fpr"], "f1": m["f1"], "auroc": m["auroc"]})
        return rows


def compare_polytopes(names: tuple[str, str], polys: tuple[SafetyPolytope, SafetyPolytope], layers: tuple[int, int],
                      facet_names: tuple[list[str], list[str]], feats: tuple[torch.Tensor, torch.Tensor],
                      unsafe: np.ndarray) -> PolytopeComparison:
    """Compare two polytopes on the probe prompts' features at each one's layer (``feats[i]`` for ``polys[i]``)."""
    with torch.no_grad():
        viol = (polys[0].violations_cpu(feats[0]), polys[1].violations_cpu(feats[1]))
    cosine = None
    if layers[0] == layers[1] and feats[0].shape[1] == feats[1].shape[1]:  # same layer, same kind of input
        na, nb = (centred(effective_normals(p, f).cpu()) for p, f in zip(polys, feats, strict=True))
        cosine = (na @ nb.T).numpy()
    return PolytopeComparison(names, layers, facet_names, viol, np.asarray(unsafe, dtype=bool), cosine, cofiring(*viol))
