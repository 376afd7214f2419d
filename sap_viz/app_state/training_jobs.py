"""Training a polytope from the app: the user's table and settings checked against ``Limits``, features
extracted a chunk at a time under the model lock, training without it, and a cancel that takes effect
between chunks and epochs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import torch

from sap_viz.app_state.store import Store
from sap_viz.data.check_set import load_check_set
from sap_viz.data.dataset import SPLIT_LABELS, DataConfig, dataset_fingerprint, dataset_provenance
from sap_viz.data.file_rows import DataFileError
from sap_viz.data.schema import SPLITS
from sap_viz.data.user_files import load_user_file
from sap_viz.errors import TrainingCancelled, WorkbenchError
from sap_viz.method.training_record import training_provenance
from sap_viz.model.features import extract_features_in_chunks
from sap_viz.model.loading import LoadedModel
from sap_viz.recipe.pipeline import check_category_facets, save_trained, split_feature_set, train_and_evaluate
from sap_viz.recipe.steering_part import attach_steering_part
from sap_viz.settings import Limits, env_name

KNOWN_DATA_KEPT = 8  # training tables remembered for the feature map of polytopes trained in this process
FEATURE_CHUNK = 16  # prompts per locked feature pass (one batch, ~1-4 s on 2 cores): progress, cancel checks and other users in between


class TrainingJobs:
    """Training runs on one shared model, and the tables they used (the feature map reads them back)."""

    steering_note: str = ""  # what the last save did about a steering part

    def __init__(self, lm: LoadedModel, lock: threading.Lock, limits: Limits):
        self.lm = lm
        self.lock = lock
        self.limits = limits
        self.known_data: dict[str, pd.DataFrame] = {}

    def load_training_file(self, path: str | Path, cfg: DataConfig = DataConfig()) -> pd.DataFrame:
        """A user's CSV/JSONL training table split by ``cfg``, refused when larger than the upload or row limits."""
        lim, name = self.limits, Path(path).name
        if Path(path).is_file() and Path(path).stat().st_size > lim.max_upload_bytes:
            raise WorkbenchError(f"{name} is larger than {lim.max_upload_mb} MiB ({env_name('max_upload_mb')})")
        try:
            return load_user_file(path, cfg, max_rows=lim.max_train_rows, max_bytes=lim.max_upload_bytes)
        except DataFileError as exc:
            if "max_rows=" in str(exc):
                raise WorkbenchError(f"{name} has more than {lim.max_train_rows:,} rows, "
                                     f"the limit ({env_name('max_train_rows')})") from None
            raise WorkbenchError(str(exc)) from None

    def check_training(self, df: pd.DataFrame, fcfg, tcfg, target_fpr: float | None = None) -> None:
        """Refuse settings and data the app should not train on, with a message naming the problem."""
        lim = self.limits
        if "split" not in df.columns or not (df["split"] == "train").any():
            raise WorkbenchError("the data has no rows in the 'train' split")
        if len(df) > lim.max_train_rows:
            raise WorkbenchError(f"the data has {len(df):,} rows; the limit is {lim.max_train_rows:,} ({env_name('max_train_rows')})")
        if set(df.loc[df["split"] == "train", "label"]) != {"safe", "unsafe"}:
            raise WorkbenchError("the training split needs both safe and unsafe rows")
        if not isinstance(fcfg.layer, int) or not 0 <= fcfg.layer < self.lm.num_layers:
            raise WorkbenchError(f"layer must be between 0 and {self.lm.num_layers - 1} for this model, got {fcfg.layer!r}")
        bounds = [("facets K", tcfg.num_facets, lim.max_facets, "max_facets"),
                  ("feature_dim F", tcfg.feature_dim, lim.max_feature_dim, "max_feature_dim"),
                  ("epochs", tcfg.epochs, lim.max_epochs, "max_epochs")]
        for what, value, high, field_name in bounds:
            if not isinstance(value, int) or not 1 <= value <= high:
                raise WorkbenchError(f"{what} must be between 1 and {high} ({env_name(field_name)}), got {value!r}")
        if target_fpr is not None and not 0 < target_fpr < 1:
            raise WorkbenchError(f"the calibration target must be between 0 and 1, got {target_fpr!r}")
        try:
            tcfg.validate()
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        self.facet_notes(df, tcfg)

    @staticmethod
    def facet_notes(df: pd.DataFrame, tcfg) -> list[str]:
        """What the facet mode will train on this table (categories mode: which category facets); refuses a
        table without categories in categories mode."""
        if tcfg.facet_mode != "categories":
            return []
        try:
            return check_category_facets(df)
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None

    def _features_in_chunks(self, texts: list[str], fcfg, check: Callable[[], None],
                            on_chunk: Callable[[int, int, bool], None] | None = None) -> torch.Tensor:
        """Features of ``texts``, a chunk at a time, each chunk under the model lock (or one read of the cache).

        Between chunks other users' requests get the model, a cancel takes effect and ``on_chunk``
        reports progress; the result is also stored under the key ``extract_features`` looks up for the
        whole list, so the feature map of the trained polytope reads it back.
        """
        @contextlib.contextmanager
        def checked_lock() -> Iterator[None]:
            check()
            with self.lock:
                yield

        return extract_features_in_chunks(self.lm, texts, fcfg, FEATURE_CHUNK, checked_lock, on_chunk)

    def _remember(self, df: pd.DataFrame, data_config: DataConfig | None, data_file: str | Path | None) -> dict:
        """The table's provenance (with ``data.config`` when the caller says how it was assembled, as ``sap-viz train``
        records it); the table itself is kept (newest last, at most ``KNOWN_DATA_KEPT``) for the feature map."""
        provenance = ({**dataset_provenance(df), "fingerprint": dataset_fingerprint(df)} if data_config is None
                      else training_provenance(df, data_config, data_file))
        self.known_data.pop(provenance["fingerprint"], None)
        self.known_data[provenance["fingerprint"]] = df
        while len(self.known_data) > KNOWN_DATA_KEPT:  # oldest first: dicts keep insertion order
            self.known_data.pop(next(iter(self.known_data)))
        return provenance

    def _extract_all(self, df: pd.DataFrame, fcfg, check: Callable[[], None],
                     progress: Callable[[float, str], None] | None, check_facets: bool = True) -> dict[str, torch.Tensor]:
        """Features of every split (``split_feature_set``: each prompt once), then of the check set, the first 30 % of
        the progress bar, reported after each chunk of prompts; training and evaluation then use them as they are.

        Why the check set here: the facets' scorecards at the end of training read its features at the same layer. Here
        they are extracted chunk by chunk under the model lock with the bar moving, and stored in the feature cache
        (keyed by the model, the feature settings and the texts), so scoring the facets is a file read, on this run and
        on every later run at this layer, instead of one long silent pass at "scoring the facets on the check set".
        """
        check_texts = load_check_set()["text"].tolist() if check_facets else []
        total = max(1, int(df["split"].isin(list(SPLITS)).sum()) + len(check_texts))
        before = 0

        def extract(label: str, texts: list[str]) -> torch.Tensor:
            nonlocal before

            def report(done: int, n: int, cached: bool) -> None:
                if progress:
                    how = "read from the cache" if cached else f"{done}/{n} prompts"
                    progress(0.3 * min(1.0, (before + done) / total), f"features for {label}: {how}")
            report(0, len(texts), False)
            feats = self._features_in_chunks(texts, fcfg, check, report)
            before += len(texts)
            return feats

        features = split_feature_set(df, lambda split, rows: extract(SPLIT_LABELS[split], rows["text"].tolist()))
        if check_texts:
            extract("the check set (scores each facet's name)", check_texts)
        return features

    def train(self, df: pd.DataFrame, fcfg, tcfg, progress: Callable[[float, str], None] | None = None, target_fpr: float | None = None,
              cancel: threading.Event | None = None, data_config: DataConfig | None = None, data_file: str | Path | None = None):
        """Extract features chunk by chunk under the model lock (cached on disk), then train without holding it.

        Setting ``cancel`` stops the run at the next chunk of features or the next epoch with ``TrainingCancelled``.
        ``data_config`` (and ``data_file`` for an uploaded table): how ``df`` was assembled, recorded as ``data.config``.
        """
        self.check_training(df, fcfg, tcfg, target_fpr)

        def check() -> None:
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled("training was stopped; nothing was saved")

        features = self._extract_all(df, fcfg, check, progress)
        check()
        provenance = self._remember(df, data_config, data_file)

        def scaled(frac: float, msg: str) -> None:
            check()
            if progress:
                progress(0.3 + 0.7 * frac, msg)

        try:
            trained = train_and_evaluate(self.lm, df, fcfg, tcfg, progress=scaled, provenance=provenance, show_tqdm=False,
                                         target_fpr=target_fpr, features=features)
        except TrainingCancelled:
            raise
        except ValueError as exc:
            raise WorkbenchError(f"training failed: {exc}") from None
        check()
        return trained

    def save_trained(self, store: Store, trained, name: str) -> str:
        """Save a trained polytope into ``store``'s folder under a fresh name; returns the directory name."""
        target = store.unique_dir(name or f"layer{trained.artifact.layer}-k{trained.artifact.polytope.num_facets}")
        save_trained(trained, target)
        # Building a steering part takes minutes of generation: the app reuses the shipped one when it fits,
        # and otherwise Steer says why it is unavailable for this polytope.
        self.steering_note = attach_steering_part(self.lm, target, "reuse", progress=False)
        return target.name
