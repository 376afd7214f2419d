"""Train a polytope again from its recorded training config (``sap-viz train --config``).

Why here and not beside the config's schema (``method/training_record.py``): training again runs the whole
pipeline (``recipe/pipeline.py``), which sits above the method; reading and checking a config does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sap_viz.data.dataset import build_dataset, dataset_fingerprint
from sap_viz.data.user_files import load_user_file
from sap_viz.errors import PolytopeFileError, RecipeError
from sap_viz.method.artifact import META_FILE, load_polytope
from sap_viz.method.training_record import (
    MAX_RECIPE_BYTES,
    RECIPE_FILE,
    TrainingRecipe,
    file_sha256,
    recipe_from_meta,
    training_provenance,
)
from sap_viz.recipe.pipeline import check_category_facets, train_and_evaluate


def read_recipe(path: str | Path) -> TrainingRecipe:
    """A training config from its file, an exported folder or a polytope folder (read from its polytope.json)."""

    path = Path(path)
    if path.is_dir():
        if (path / RECIPE_FILE).is_file():
            path = path / RECIPE_FILE
        elif (path / META_FILE).is_file():
            try:
                return TrainingRecipe.from_dict(recipe_from_meta(load_polytope(path).meta))
            except PolytopeFileError as exc:
                raise RecipeError(str(exc)) from None
        else:
            raise RecipeError(f"{path} holds neither {RECIPE_FILE} nor {META_FILE}")
    if not path.is_file():
        raise RecipeError(f"no training config at {path}")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path.name} is larger than {MAX_RECIPE_BYTES >> 20} MiB")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{path.name} is not valid UTF-8 JSON: {exc}") from None
    return TrainingRecipe.from_dict(raw)


def train_from_recipe(lm, recipe: TrainingRecipe, data_path: str | Path | None = None, check_facets: bool = True,
                      show_tqdm: bool = True, note: Callable[[str], None] | None = None):
    """Train the polytope a recipe describes (``sap-viz train --config``); returns the pipeline's TrainedPolytope.

    The data is assembled from the recorded sources and split seed, or read from ``data_path`` when the
    polytope was trained on a user file (whose hash must match the recorded one). A different data
    fingerprint or model fingerprint is told to ``note`` before training starts: the polytope would then differ.
    """

    notes: list[str] = []
    if recipe.data_file is not None:
        if data_path is None:
            raise RecipeError(f"this polytope was trained on the file {recipe.data_file['name']!r}: pass it with --data")
        recorded = recipe.data_file.get("sha256")
        if recorded and file_sha256(data_path) != recorded:
            raise RecipeError(f"{Path(data_path).name} is not the file this polytope was trained on (sha256 differs from "
                              f"{recorded[:12]}…); set data.file.sha256 to null in the config to train on it anyway")
        df = load_user_file(data_path, recipe.data)
    elif data_path is not None:
        raise RecipeError("this polytope was trained on built-in sources; --data cannot replace them with --config")
    else:
        df = build_dataset(recipe.data)
    fingerprint = dataset_fingerprint(df)
    if recipe.data_fingerprint and fingerprint != recipe.data_fingerprint:
        notes.append(f"the training table's fingerprint is {fingerprint}, the config records {recipe.data_fingerprint}: "
                     "the data changed, so the polytope will differ")
    if recipe.model_fingerprint and lm.fingerprint != recipe.model_fingerprint:
        notes.append(f"the model's weights fingerprint is {lm.fingerprint}, the config records {recipe.model_fingerprint}: "
                     "other weights, so the polytope will differ")
    if recipe.train.facet_mode == "categories":
        notes += check_category_facets(df)
    for line in notes if note is not None else []:
        note(line)
    provenance = training_provenance(df, recipe.data, data_path)
    return train_and_evaluate(lm, df, recipe.features, recipe.train, provenance=provenance, target_fpr=recipe.target_fpr,
                              check_facets=check_facets and recipe.facet_check, show_tqdm=show_tqdm)
