"""2-D maps (UMAP, PCA) of a polytope's training features, cached on disk, with new prompts projected in.

The map shows what the polytope sees: the layer-L hidden state at each training prompt's last token,
standardised with the polytope's own mean and std (the coordinates its encoder reads). Each map is
computed once per (polytope weights, recorded training-data fingerprint) and stored as safetensors + JSON under
``cache_dir()/maps`` — no pickles, so a cache file is as safe to read as a polytope.

New points (a prompt's per-token trajectory) go into the UMAP map by a distance-weighted average of
their nearest training neighbours' coordinates. That is how UMAP's own ``transform`` initialises new
points; doing only that step needs no fitted reducer object, so the projection is the same whether
the map was fitted in this process or read back from the cache. PCA projects exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from sap_viz.data.dataset import DataConfig, build_dataset, dataset_fingerprint
from sap_viz.errors import PolytopeFileError, UserError
from sap_viz.files import save_tensors_atomic, write_json_atomic
from sap_viz.method.artifact import MAP_FILES, PolytopeArtifact, polytope_digest
from sap_viz.method.safe_files import read_json, read_tensors
from sap_viz.model.features import extract_features_in_chunks, hidden_states_at
from sap_viz.model.loading import LoadedModel, cache_dir
from sap_viz.model.memory import release_freed_memory

MAP_VERSION = 2
METHODS = ("umap", "pca")
ProgressFn = Callable[[float, str], None]
log = logging.getLogger(__name__)


def training_frame(art: PolytopeArtifact, known: dict[str, pd.DataFrame] | None = None) -> tuple[pd.DataFrame, str, bool]:
    """The polytope's training rows, rebuilt from its provenance; (rows, note on where they come from, whether they
    are the polytope's own).

    Built-in data is rebuilt with the recorded seed and accepted only if its fingerprint matches the
    one stored in the polytope. A polytope trained on other data falls back to the built-in training
    split, and the note says so, so the map never claims to show data the polytope did not see.
    """

    want = str(art.meta.get("data", {}).get("fingerprint", ""))
    if known and want in known:
        df = known[want]
        return df[df["split"] == "train"].reset_index(drop=True), "the polytope's training data", True
    seed = int(art.meta.get("train_config", {}).get("seed", 42))
    df = build_dataset(DataConfig(seed=seed))
    own = bool(want) and dataset_fingerprint(df) == want
    if own:
        note = "the polytope's training data (built-in sources, rebuilt from its provenance)"
    else:
        note = ("built-in training data — this polytope was trained on other data "
                f"(fingerprint {want or 'unknown'}), which is not available here")
    return df[df["split"] == "train"].reset_index(drop=True), note, own


@dataclass
class TrainingView:
    """Training rows with their standardised features and violations: the base of the map and facet views."""

    texts: list[str]
    labels: list[str]
    categories: list[str]
    features: torch.Tensor  # N × d, standardised with the polytope's mean / std
    violations: torch.Tensor  # N × K
    note: str
    key: str
    coords: dict[str, np.ndarray] = field(default_factory=dict)  # method -> N × 2
    pca_mean: torch.Tensor | None = None
    pca_components: torch.Tensor | None = None  # 2 × d

    @property
    def unsafe(self) -> np.ndarray:
        return np.array([label == "unsafe" for label in self.labels])

    @property
    def top_facet(self) -> np.ndarray:
        return self.violations.argmax(dim=1).numpy()

    @property
    def predicted_unsafe(self) -> np.ndarray:
        return (self.violations.max(dim=1).values >= 0).numpy()


def fit_pca(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(mean, 2 × d components, N × 2 coordinates); signs fixed so reruns give the same picture."""
    mean = x.mean(dim=0)
    centred = x - mean
    _, _, v = torch.linalg.svd(centred.double(), full_matrices=False)
    comps = v[:2].float()
    pivot = comps.abs().argmax(dim=1)
    signs = torch.sign(comps[torch.arange(comps.shape[0]), pivot])
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)[:, None]
    return mean, comps, (centred @ comps.T).numpy()


def fit_umap(x: torch.Tensor, seed: int = 42, n_neighbors: int = 15) -> np.ndarray:
    """UMAP coordinates (N × 2); single-threaded with a fixed seed so the map is reproducible."""
    import umap  # slow import (numba): only when a map is actually fitted

    reducer = umap.UMAP(n_neighbors=min(n_neighbors, max(2, len(x) - 1)), min_dist=0.1, random_state=seed,
                        n_jobs=1, metric="euclidean")
    coords = np.asarray(reducer.fit_transform(x.numpy()), dtype=np.float32)
    del reducer
    release_freed_memory()  # what numba's compiler and the fit's graphs held
    return coords


def project_knn(train_x: torch.Tensor, train_coords: np.ndarray, new_x: torch.Tensor, k: int = 10) -> np.ndarray:
    """Out-of-sample coordinates: inverse-distance weighted mean of the k nearest training points."""
    dist = torch.cdist(new_x.float(), train_x.float())
    k = min(k, train_x.shape[0])
    d, idx = dist.topk(k, dim=1, largest=False)
    w = 1.0 / (d + 1e-6)
    w = w / w.sum(dim=1, keepdim=True)
    coords = torch.from_numpy(np.asarray(train_coords, dtype=np.float32))[idx]  # M × k × 2
    return (w[..., None] * coords).sum(dim=1).numpy()


def project(view: TrainingView, method: str, x: torch.Tensor) -> np.ndarray:
    """Coordinates of standardised states ``x`` (M × d) in ``view``'s map of ``method``."""
    if method == "pca":
        if view.pca_mean is None or view.pca_components is None:
            raise UserError("the PCA map is not computed yet")
        return ((x - view.pca_mean) @ view.pca_components.T).numpy()
    if method == "umap":
        if "umap" not in view.coords:
            raise UserError("the UMAP map is not computed yet")
        return project_knn(view.features, view.coords["umap"], x)
    raise UserError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


# ---------------------------------------------------------------- disk cache


def _paths(key: str) -> tuple[Path, Path]:
    root = cache_dir() / "maps"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{key}.safetensors", root / f"{key}.json"


def _view_tensors(view: TrainingView, features_dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    tensors = {"features": view.features.to(features_dtype).contiguous(), "violations": view.violations.contiguous()}
    for method, coords in view.coords.items():
        tensors[f"coords.{method}"] = torch.from_numpy(np.ascontiguousarray(coords, dtype=np.float32))
    if view.pca_mean is not None and view.pca_components is not None:
        tensors["pca.mean"] = view.pca_mean.contiguous()
        tensors["pca.components"] = view.pca_components.contiguous()
    return tensors


def _view_meta(view: TrainingView) -> dict:
    return {"version": MAP_VERSION, "texts": view.texts, "labels": view.labels, "categories": view.categories, "note": view.note}


def _view_from(meta: object, tensors: dict[str, torch.Tensor], key: str, dims: tuple[int, int] | None = None,
               methods: tuple[str, ...] = ()) -> TrainingView:
    """A view from its stored parts, every shape checked (``dims``: the polytope's input width and facet count;
    ``methods``: coordinates that must be there); a ValueError names what does not fit."""
    if not isinstance(meta, dict) or meta.get("version") != MAP_VERSION:
        raise ValueError(f"not a version-{MAP_VERSION} map")
    features, violations = tensors.get("features"), tensors.get("violations")
    if features is None or violations is None or features.ndim != 2 or violations.ndim != 2:
        raise ValueError("features and violations must be 2-D tensors")
    n = features.shape[0]
    texts, labels, categories = meta.get("texts"), meta.get("labels"), meta.get("categories")
    for name, values in (("texts", texts), ("labels", labels), ("categories", categories)):
        if not isinstance(values, list) or len(values) != n or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{name} must be {n} strings, one per row of the features")
    if not set(labels) <= {"safe", "unsafe"}:
        raise ValueError("labels must be 'safe' or 'unsafe'")
    if not isinstance(meta.get("note"), str):
        raise ValueError("note must be a string")
    if dims is not None and (features.shape[1] != dims[0] or tuple(violations.shape) != (n, dims[1])):
        raise ValueError(f"features {tuple(features.shape)} and violations {tuple(violations.shape)} do not fit a "
                         f"polytope reading {dims[0]} inputs with {dims[1]} facets")
    if violations.shape[0] != n:
        raise ValueError("violations and features differ in rows")
    view = TrainingView(texts, labels, categories, features.float(), violations.float(), meta["note"], key)
    for name, tensor in tensors.items():
        if name.startswith("coords."):
            method = name.split(".", 1)[1]
            if method not in METHODS or tuple(tensor.shape) != (n, 2):
                raise ValueError(f"{name}: expected {n} × 2 coordinates of one of {', '.join(METHODS)}")
            view.coords[method] = tensor.float().numpy()
    missing = [m for m in methods if m not in view.coords]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} coordinates")
    mean, comps = tensors.get("pca.mean"), tensors.get("pca.components")
    if (mean is None) != (comps is None) or (mean is not None and (tuple(mean.shape) != (features.shape[1],)
                                                                   or tuple(comps.shape) != (2, features.shape[1]))):
        raise ValueError("pca.mean and pca.components must come together and match the features' width")
    if not all(bool(torch.isfinite(t.float()).all()) for t in tensors.values()):
        raise ValueError("a tensor holds NaN or Inf")
    view.pca_mean, view.pca_components = mean, comps
    return view


def save_view(view: TrainingView) -> None:
    tpath, jpath = _paths(view.key)
    save_tensors_atomic(tpath, _view_tensors(view))
    write_json_atomic(jpath, _view_meta(view), indent=None)


def load_view(key: str) -> TrainingView | None:
    """The cached view for ``key``, or None if absent or unreadable (then it is simply rebuilt)."""
    tpath, jpath = _paths(key)
    if not (tpath.is_file() and jpath.is_file()):
        return None
    try:
        return _view_from(json.loads(jpath.read_text(encoding="utf-8")), load_file(str(tpath)), key)
    except (OSError, ValueError, KeyError, RuntimeError):
        return None


# ---------------------------------------------------------------- the map stored with a polytope


def _data_fingerprint(art: PolytopeArtifact) -> str:
    return str(art.meta.get("data", {}).get("fingerprint") or "unknown")


def write_polytope_map(view: TrainingView, art: PolytopeArtifact, directory: str | Path) -> Path:
    """Store a full view (PCA and UMAP fitted) beside the polytope, tied to its weights and training data.

    Features are stored in half precision (they only place new points among their neighbours); the
    coordinates, violations and PCA stay exact. Returns the JSON file's path."""
    missing = [m for m in METHODS if m not in view.coords]
    if missing:
        raise UserError(f"the map lacks {' and '.join(missing)} coordinates; fit them before storing it")
    directory = Path(directory)
    tensors_name, meta_name = MAP_FILES
    save_tensors_atomic(directory / tensors_name, _view_tensors(view, torch.float16))
    meta = {**_view_meta(view), "polytope_digest": polytope_digest(art), "data_fingerprint": _data_fingerprint(art)}
    write_json_atomic(directory / meta_name, meta, indent=None)
    return directory / meta_name


def read_polytope_map(art: PolytopeArtifact, key: str, digest: str | None = None) -> TrainingView | None:
    """The map stored beside the polytope, if there is one computed from these weights and this training data.

    A map of other weights (the polytope was retrained or relabelled its tensors) is ignored; an unreadable or
    malformed one is ignored with a warning. Either way the app builds the map as for any polytope. ``digest``: the
    polytope's ``polytope_digest`` when the caller has it (hashing the tensors again costs as much as reading the map)."""
    if art.path is None:
        return None
    tpath, jpath = (Path(art.path) / name for name in MAP_FILES)
    if not (tpath.is_file() and jpath.is_file()):
        return None
    try:
        meta = read_json(jpath)
        if not isinstance(meta, dict):
            raise ValueError("map.json is not an object")
        if meta.get("polytope_digest") != (digest or polytope_digest(art)) or meta.get("data_fingerprint") != _data_fingerprint(art):
            log.info("%s: the stored map belongs to other weights or data; building the map", art.path)
            return None
        dims = (int(art.polytope.mean.shape[0]), int(art.polytope.num_facets))
        return _view_from(meta, read_tensors(tpath), key, dims, METHODS)
    except (PolytopeFileError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: the stored map is not used (%s); building the map", art.path, exc)
        return None


# ---------------------------------------------------------------- building


def build_view(
    lm: LoadedModel,
    art: PolytopeArtifact,
    lock: threading.Lock | None = None,
    progress: ProgressFn | None = None,
    known_data: dict[str, pd.DataFrame] | None = None,
    chunk: int = 32,
    max_rows: int | None = None,
    use_stored: bool = True,
    own_data_only: bool = False,
) -> TrainingView:
    """Load the cached view or extract features chunk by chunk, then fit PCA (fast) and cache it.

    The lock is taken per chunk, not for the whole extraction, so live requests interleave with a
    first-start build instead of waiting minutes for it. The features are the training split's cache entry
    (``extract_features_in_chunks``): after training in this process, the view costs no forward pass. ``max_rows`` keeps a seeded sample,
    stratified by label, for small machines and tests (the note then says so). A map stored with the polytope
    (``sap-viz precompute-map``) is read first, unless ``use_stored`` is false. ``own_data_only``: refuse, rather
    than map the built-in data, when the polytope's own training data cannot be rebuilt here (a map to store).
    """
    def report(frac: float, msg: str) -> None:
        if progress is not None:
            progress(frac, msg)

    # Keyed by the polytope's weights and its recorded data fingerprint, so a cache hit needs no
    # rebuild of the data set (seconds on 2 cores); the cached view stores its own texts and labels.
    fingerprint = _data_fingerprint(art)
    source = "u" if known_data and fingerprint in known_data else "b"  # data trained in this session, or rebuilt
    digest = polytope_digest(art)
    key = f"{digest}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:8]}{source}-{max_rows or 'all'}-v{MAP_VERSION}"
    stored = read_polytope_map(art, key, digest) if use_stored else None
    if stored is not None:
        report(1.0, "stored with the polytope")
        return stored
    cached = load_view(key)
    if cached is not None:
        report(1.0, "loaded from cache")
        return cached
    report(0.0, "reading the training data")
    df, note, own = training_frame(art, known_data)
    if own_data_only and not own:
        raise UserError(f"this polytope was trained on data that cannot be rebuilt here (fingerprint {fingerprint}), so "
                        "a map of it cannot be computed here; the app builds its map of the built-in data instead")
    if len(df) == 0:
        raise UserError("the polytope's training data has no rows")
    if max_rows is not None and len(df) > max_rows:
        frac = max_rows / len(df)
        df = (df.groupby("label", group_keys=False).sample(frac=frac, random_state=42)
              .sort_index().reset_index(drop=True))
        note += f"; a seeded sample of {len(df)} prompts"
    texts = df["text"].tolist()
    fcfg = art.feature_config()  # so the map shows the states the polytope was trained on

    def on_chunk(done: int, n: int, cached: bool) -> None:
        report(0.9 * done / n, "features read from the cache" if cached else f"features at layer {art.layer}: {done}/{n} prompts")

    report(0.0, f"features at layer {art.layer}: 0/{len(texts)} prompts")
    # The training split's cache entry: a polytope just trained here reads the features its training extracted.
    hidden = extract_features_in_chunks(lm, texts, fcfg, chunk, (lambda: lock) if lock is not None else contextlib.nullcontext,
                                        on_chunk)
    x = art.polytope.standardize(hidden.float()).float()
    with torch.no_grad():
        viol = art.polytope.violations(hidden).float()
    view = TrainingView(texts, df["label"].tolist(), df["category"].tolist(), x, viol, note, key)
    del df, hidden
    release_freed_memory()  # the extraction's batches and the rebuilt data set
    report(0.95, "PCA")
    view.pca_mean, view.pca_components, view.coords["pca"] = fit_pca(x)
    save_view(view)
    report(1.0, "done")
    return view


def ensure_umap(view: TrainingView, seed: int = 42) -> TrainingView:
    """Fit UMAP once (tens of seconds on 2 cores) and add it to the cached view."""
    if "umap" not in view.coords:
        view.coords["umap"] = fit_umap(view.features, seed)
        save_view(view)
    return view


@torch.no_grad()
def token_states(lm: LoadedModel, art: PolytopeArtifact, token_ids: list[int], span: tuple[int, int]) -> torch.Tensor:
    """Standardised polytope inputs at every token of a sequence (one forward pass, stopped at L);
    ``span`` is the user's text among the tokens, read by a polytope whose position pools over it."""
    hidden = hidden_states_at(lm, [token_ids], art.layer)[0]
    return art.polytope.standardize(art.token_inputs(hidden.float(), span)).float()
