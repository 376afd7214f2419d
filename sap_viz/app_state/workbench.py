"""The app's state without gradio: one model, the active polytope, a model lock, counters, the polytope folder.

Why a lock: the generation hooks are already bound to their calling thread, but on a 2-core CPU two
forward passes at once only slow each other down, and the active polytope may change between two
requests. Taking one ``threading.Lock`` around every model call keeps each request's settings and
hooks to itself and makes latency predictable. A streamed generation holds the lock in a worker
thread of its own and never across a ``yield``, so a request that is cancelled or abandoned
mid-stream cannot keep the model from everyone else.

Polytopes a user uploads are untrusted: only the three known file names are accepted (loose or in a
zip; no links, no paths that leave the archive), sizes are capped before anything is read or
extracted, the files are validated with ``load_polytope`` in a temporary directory, and only then
copied into the polytopes folder under a sanitised name.

Every other user input is checked here too, against ``Limits`` (``limits.py``): prompts are cleaned
of control characters and cut to the token budget with a notice, training settings and data sizes
are bounded, and a long training run stops between batches of work when its cancel event is set.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from sap_viz.app_state.counters import DeploymentCounters
from sap_viz.method.artifact import (
    FACETS_FILE,
    FORMAT_VERSION,
    META_FILE,
    TENSORS_FILE,
    PolytopeArtifact,
    PolytopeFileError,
    default_facets,
    label_facet,
    load_polytope,
    read_facets,
    write_json_atomic,
)
from sap_viz.method.generation import Comparison, GenerationConfig, GenerationResult, InterventionConfig, stream_generation
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import EncodedPrompt, clean_text, encode_prompt
from sap_viz.settings import DEFAULT_POLYTOPE, Limits, env_name, get_limits

log = logging.getLogger(__name__)

POLYTOPE_ENV = "SAP_VIZ_POLYTOPE"
POLYTOPES_DIR_ENV = "SAP_VIZ_POLYTOPES_DIR"
MAP_ROWS_ENV = "SAP_VIZ_MAP_MAX_ROWS"  # cap on training prompts in the feature map (small machines, tests)
ALLOWED_FILES = (TENSORS_FILE, META_FILE, FACETS_FILE)
MAX_ZIP_ENTRIES = 16
KNOWN_DATA_KEPT = 8  # training tables remembered for the feature map of polytopes trained in this process
FEATURE_CHUNK = 128  # prompts per locked feature pass while training (cancel checks and other users in between)
_NAME_OK = re.compile(r"[^a-z0-9._-]+")


class WorkbenchError(ValueError):
    """A request the workbench refuses; the message is meant for the user."""


class TrainingCancelled(WorkbenchError):
    """The user stopped a training run."""


@dataclass
class CheckedPrompt:
    """A prompt after cleaning and fitting to a token budget, with what the user should be told."""

    text: str  # cleaned (control characters removed), not yet truncated
    encoded: EncodedPrompt
    notices: list[str]

    @property
    def truncated(self) -> bool:
        return self.encoded.truncated

    @property
    def notice(self) -> str:
        return " ".join(self.notices)


def default_polytope_path() -> Path:
    return Path(os.environ.get(POLYTOPE_ENV) or DEFAULT_POLYTOPE)


def sanitize_name(raw: str, fallback: str = "polytope") -> str:
    """A directory name that cannot escape the polytopes folder: [a-z0-9._-], no leading dot, ≤ 64 chars."""
    name = _NAME_OK.sub("-", str(raw).strip().lower())
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", "-", name)).strip(".-_")[:64].strip(".-_")
    return name or fallback


@dataclass
class MapStatus:
    """Progress of the background build of the training view (features, PCA, UMAP)."""

    fraction: float = 0.0
    message: str = "not started"
    error: str | None = None
    done: bool = False
    umap_done: bool = False


class Workbench:
    def __init__(self, lm: LoadedModel, polytope_path: str | Path | None = None, polytopes_dir: str | Path | None = None,
                 limits: Limits | None = None):
        self.lm = lm
        self.limits = limits or get_limits()
        self.lock = threading.Lock()
        self.counters = DeploymentCounters()
        path = Path(polytope_path) if polytope_path is not None else default_polytope_path()
        self.polytopes_dir = Path(polytopes_dir or os.environ.get(POLYTOPES_DIR_ENV) or path.parent).resolve()
        self.polytopes_dir.mkdir(parents=True, exist_ok=True)
        self.artifact: PolytopeArtifact | None = None
        self.load_error: str | None = None
        self.known_data: dict[str, pd.DataFrame] = {}
        rows = os.environ.get(MAP_ROWS_ENV, "").strip()
        self.map_max_rows: int | None = int(rows) if rows.isdigit() and int(rows) > 0 else None
        self._state_lock = threading.Lock()  # guards artifact swaps and the views below
        self._views: dict[str, object] = {}  # polytope path -> TrainingView
        self._map_status: dict[str, MapStatus] = {}
        self._map_threads: dict[str, threading.Thread] = {}
        try:
            self._set_artifact(self._load(path))
        except PolytopeFileError as exc:
            self.load_error = f"no polytope loaded from {path}: {exc}"
            log.warning(self.load_error)

    @classmethod
    def from_env(cls) -> Workbench:
        from sap_viz.model.loading import load_model

        return cls(load_model("default"))

    # ------------------------------------------------------------ polytopes

    def _load(self, path: Path, strict_fingerprint: bool = False) -> PolytopeArtifact:
        """Local polytopes load with a warning on a fingerprint mismatch (same model, other dtype);
        uploads are strict: a polytope for other weights is refused."""
        return load_polytope(path, self.lm.hidden_size, self.lm.num_layers, self.lm.fingerprint, strict_fingerprint=strict_fingerprint)

    def _set_artifact(self, art: PolytopeArtifact) -> None:
        with self._state_lock:
            self.artifact = art
            self.load_error = None

    def require_artifact(self) -> PolytopeArtifact:
        art = self.artifact
        if art is None:
            raise WorkbenchError(self.load_error or "no polytope is active: train one or upload one in 'Train & calibrate'")
        return art

    @property
    def active_name(self) -> str | None:
        return self.artifact.path.name if self.artifact and self.artifact.path else None

    def list_polytopes(self) -> list[str]:
        if not self.polytopes_dir.is_dir():
            return []
        return sorted(p.name for p in self.polytopes_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file() and (p / TENSORS_FILE).is_file())

    def _resolve(self, name: str) -> Path:
        if name not in self.list_polytopes():
            raise WorkbenchError(f"unknown polytope {name!r}; available: {', '.join(self.list_polytopes()) or 'none'}")
        return self.polytopes_dir / name

    def activate(self, name: str) -> PolytopeArtifact:
        try:
            art = self._load(self._resolve(name))
        except PolytopeFileError as exc:
            raise WorkbenchError(f"cannot activate {name!r}: {exc}") from None
        self._set_artifact(art)
        return art

    def refresh_facets(self) -> list[dict]:
        art = self.require_artifact()
        if art.path is not None:
            art.facets = read_facets(art.path)
        return art.facets

    def label(self, index: int, name: str, policy: str = "", author: str = "", confidence: float = 1.0) -> dict:
        """Label a facet of the active polytope on disk (atomic, with history) and in memory."""
        art = self.require_artifact()
        if art.path is None:
            raise WorkbenchError("the active polytope has not been saved yet")
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise WorkbenchError(f"facet index must be an integer, got {index!r}") from None
        facet = label_facet(art.path, index, name, policy, author, confidence)
        self.refresh_facets()
        return facet

    def _unique_dir(self, name: str) -> Path:
        base = sanitize_name(name)
        candidate, n = base, 2
        while (self.polytopes_dir / candidate).exists():
            candidate, n = f"{base}-{n}", n + 1
        return self.polytopes_dir / candidate

    def _collect_upload(self, paths: list[str | Path], staging: Path) -> None:
        """Copy the uploaded polytope files (loose or zipped) into ``staging``, refusing anything else."""
        total = 0
        cap = self.limits.max_upload_bytes
        seen: set[str] = set()

        def accept(name: str, size: int) -> None:
            nonlocal total
            if name not in ALLOWED_FILES:
                raise WorkbenchError(f"unexpected file {name!r}: a polytope upload holds only {', '.join(ALLOWED_FILES)}")
            if name in seen:
                raise WorkbenchError(f"{name} was given twice")
            seen.add(name)
            total += size
            if total > cap:
                raise WorkbenchError(f"upload is larger than {self.limits.max_upload_mb} MiB ({env_name('max_upload_mb')})")

        for raw in paths:
            src = Path(raw)
            if src.is_symlink() or not src.is_file():
                raise WorkbenchError(f"{src.name} is not a regular file")
            if src.stat().st_size > cap:
                raise WorkbenchError(f"{src.name} is larger than {self.limits.max_upload_mb} MiB ({env_name('max_upload_mb')})")
            if src.suffix.lower() == ".zip":
                try:
                    with zipfile.ZipFile(src) as zf:
                        infos = zf.infolist()
                        if len(infos) > MAX_ZIP_ENTRIES:
                            raise WorkbenchError(f"{src.name} has {len(infos)} entries; a polytope zip holds at most 3 files")
                        for info in infos:
                            if info.is_dir():
                                continue
                            parts = Path(info.filename).parts
                            if info.filename.startswith(("/", "\\")) or ".." in parts or len(parts) > 2 or ":" in info.filename:
                                raise WorkbenchError(f"zip entry {info.filename!r} has an unsafe path")
                            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                                raise WorkbenchError(f"zip entry {info.filename!r} is a symbolic link")
                            accept(parts[-1], info.file_size)
                            # A member can never expand past its declared size: the copy stops there and
                            # zipfile's CRC check fails if the data was meant to be longer.
                            with zf.open(info) as fin, open(staging / parts[-1], "wb") as fout:
                                shutil.copyfileobj(fin, fout, 1 << 20)
                            if (staging / parts[-1]).stat().st_size != info.file_size:
                                raise WorkbenchError(f"zip entry {info.filename!r} does not match its declared size")
                except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as exc:
                    raise WorkbenchError(f"{src.name} is not a valid zip file ({exc})") from None
            else:
                name = src.name  # Gradio keeps the uploaded file's original name
                accept(name, src.stat().st_size)
                shutil.copyfile(src, staging / name)
        if TENSORS_FILE not in seen or META_FILE not in seen:
            raise WorkbenchError(f"a polytope upload needs {TENSORS_FILE} and {META_FILE} ({FACETS_FILE} optional)")

    def import_polytope(self, paths: list[str | Path], name: str = "") -> tuple[str, list[str]]:
        """Validate an uploaded polytope and add it to the folder; returns (directory name, warnings)."""
        if not paths:
            raise WorkbenchError("no files were uploaded")
        staging = Path(tempfile.mkdtemp(prefix="sap-viz-upload-"))
        try:
            self._collect_upload(list(paths), staging)
            try:
                art = self._load(staging, strict_fingerprint=True)
            except PolytopeFileError as exc:
                raise WorkbenchError(f"rejected: {exc}") from None
            if not (staging / FACETS_FILE).exists():
                write_json_atomic(staging / FACETS_FILE, {"format_version": FORMAT_VERSION, "facets": default_facets(art.polytope.num_facets)})
            target = self._unique_dir(name or "uploaded")
            tmp_target = Path(tempfile.mkdtemp(dir=self.polytopes_dir, prefix=".incoming-"))
            try:
                for fname in ALLOWED_FILES:
                    shutil.copyfile(staging / fname, tmp_target / fname)
                tmp_target.rename(target)
            finally:
                if tmp_target.exists():
                    shutil.rmtree(tmp_target, ignore_errors=True)
            return target.name, art.warnings
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def export_polytope(self, name: str | None = None) -> Path:
        """A zip with exactly the three polytope files, in a fresh temporary directory."""
        name = name or self.active_name
        if not name:
            raise WorkbenchError("no polytope to export")
        src = self._resolve(name)
        out = Path(tempfile.mkdtemp(prefix="sap-viz-export-")) / f"{name}.zip"
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for fname in ALLOWED_FILES:
                if (src / fname).is_file():
                    zf.write(src / fname, arcname=fname)
        return out

    # ------------------------------------------------------------ model calls

    def _run_one(self, art: PolytopeArtifact, prompt: str, gen: GenerationConfig, cfg: InterventionConfig, which: str,
                 out: queue.Queue, cancel: threading.Event | None = None) -> GenerationResult:
        for item in stream_generation(self.lm, art, prompt, gen, cfg, cancel):
            if isinstance(item, GenerationResult):
                return item
            out.put((which, item))
        raise RuntimeError("generation ended without a result")

    def check_prompt(self, prompt: object, max_tokens: int | None = None) -> CheckedPrompt:
        """Clean a prompt and fit it to the token budget (default: the generation limit); refuses empty or huge text."""
        art = self.require_artifact()
        if not isinstance(prompt, str):
            raise WorkbenchError("the prompt must be non-empty text")
        if len(prompt) > self.limits.max_text_chars:
            raise WorkbenchError(f"the prompt has {len(prompt):,} characters; the limit is {self.limits.max_text_chars:,} "
                                 f"({env_name('max_text_chars')})")
        text = clean_text(prompt)
        if not text.strip():
            raise WorkbenchError("the prompt must be non-empty text" + (" (it held only control characters)" if prompt.strip() else ""))
        notices = []
        if text != prompt:
            notices.append("Control characters or invalid Unicode were removed from the prompt.")
        budget = max_tokens or self.limits.max_prompt_tokens
        enc = encode_prompt(self.lm.tokenizer, text, art.chat_template, budget)
        if enc.truncated:
            notices.append(f"The prompt was cut to fit the {budget}-token budget: the model saw its first "
                           f"{enc.kept_chars:,} of {len(text):,} characters.")
        return CheckedPrompt(text, enc, notices)

    def _check_generation(self, gen: GenerationConfig, cfg: InterventionConfig) -> GenerationConfig:
        if not 1 <= gen.max_new_tokens <= self.limits.max_new_tokens:
            raise WorkbenchError(f"max_new_tokens must be between 1 and {self.limits.max_new_tokens} "
                                 f"({env_name('max_new_tokens')}), got {gen.max_new_tokens}")
        gen = replace(gen, max_prompt_tokens=min(gen.max_prompt_tokens, self.limits.max_prompt_tokens))
        try:
            gen.validate()
            cfg.validate()
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        return gen

    def stream_compare(
        self, prompt: str, gen: GenerationConfig, cfg: InterventionConfig
    ) -> Iterator[tuple[str, str | Comparison]]:
        """Stream the unsteered run, then the intervened one; yields (which, text) and finally ("done", Comparison).

        The prompt is cleaned of control characters and cut to ``limits.max_prompt_tokens`` tokens;
        ``check_prompt`` says whether (and how) that happened.
        """
        art = self.require_artifact()
        gen = self._check_generation(gen, cfg)
        prompt = self.check_prompt(prompt, gen.max_prompt_tokens).text
        monitor = replace(cfg, mode="monitor")
        # The model lock is held by a worker thread, never across a ``yield``: a consumer that stops
        # iterating (a cancelled or disconnected request whose generator is never closed) would
        # otherwise keep the lock, and every later request would wait forever.
        items: queue.Queue = queue.Queue()
        abandoned = threading.Event()

        def work() -> None:
            try:
                with self.lock:
                    base = self._run_one(art, prompt, gen, monitor, "baseline", items, abandoned)
                    skip = cfg.mode == "monitor" or abandoned.is_set()  # nobody waits for the second run
                    other = base if skip else self._run_one(art, prompt, gen, cfg, "intervened", items, abandoned)
                items.put(("done", Comparison(base, other)))
            except BaseException as exc:  # noqa: BLE001 — handed to the consumer below, which re-raises it
                items.put(("error", exc))

        threading.Thread(target=work, name="sap-viz-generate", daemon=True).start()
        try:
            while True:
                which, item = items.get()
                if which == "error":
                    raise item
                if which == "done":
                    self.counters.record_comparison(item)
                    yield "done", item
                    return
                yield which, item
        finally:
            abandoned.set()

    def compare(self, prompt: str, gen: GenerationConfig, cfg: InterventionConfig) -> Comparison:
        result = None
        for which, item in self.stream_compare(prompt, gen, cfg):
            if which == "done":
                result = item
        assert isinstance(result, Comparison)
        return result

    def score(self, texts: list[str]) -> torch.Tensor:
        from sap_viz.experiments.pipeline import score_texts

        art = self.require_artifact()
        texts = self.check_texts(texts)
        with self.lock:
            return score_texts(self.lm, art, texts)

    def check_texts(self, texts: object) -> list[str]:
        """The texts cleaned of control characters; refuses an empty or too long list, empty or too long texts."""
        lim = self.limits
        if not isinstance(texts, list) or not texts:
            raise WorkbenchError("give a non-empty list of texts")
        if len(texts) > lim.max_score_texts:
            raise WorkbenchError(f"at most {lim.max_score_texts} texts per call ({env_name('max_score_texts')}), got {len(texts)}")
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not clean_text(t).strip():
                raise WorkbenchError(f"text {i} is empty or not a string")
            if len(t) > lim.max_text_chars:
                raise WorkbenchError(f"text {i} has {len(t):,} characters; the limit is {lim.max_text_chars:,} ({env_name('max_text_chars')})")
            out.append(clean_text(t))
        return out

    def truncated(self, texts: list[str]) -> list[bool]:
        """Which texts ``score`` cuts to the polytope's token budget (its training-time ``max_tokens``)."""
        art = self.require_artifact()
        budget = int(art.meta["max_tokens"])
        return [encode_prompt(self.lm.tokenizer, t, art.chat_template, budget).truncated for t in self.check_texts(texts)]

    def prompt_tokens(self, prompt: str) -> tuple[list[str], list[int], torch.Tensor, CheckedPrompt]:
        """(token texts, token ids, T × K violations, the checked prompt) of the formatted prompt, as monitoring sees it.

        The budget is the polytope's training-time ``max_tokens`` (what ``score`` uses), capped by the prompt limit.
        """
        from sap_viz.model.features import hidden_states_at

        art = self.require_artifact()
        checked = self.check_prompt(prompt, min(int(art.meta["max_tokens"]), self.limits.max_prompt_tokens))
        enc = checked.encoded
        with self.lock:
            hidden = hidden_states_at(self.lm, [enc.ids], art.layer)[0]
        with torch.no_grad():
            viol = art.polytope.violations(hidden)
        return [self.lm.tokenizer.decode([t]) for t in enc.ids], enc.ids, viol, checked

    def attribution(self, prompt: str, window: int = 3):
        from sap_viz.analysis.attribution import word_masking

        art = self.require_artifact()
        text = self.check_prompt(prompt).text
        with self.lock:
            try:
                return word_masking(self.lm, art, text, window)
            except ValueError as exc:
                raise WorkbenchError(str(exc)) from None

    def trajectory(self, token_ids: list[int]) -> torch.Tensor:
        from sap_viz.analysis.feature_map import token_states

        art = self.require_artifact()
        with self.lock:
            return token_states(self.lm, art, token_ids)

    def load_training_file(self, path: str | Path) -> pd.DataFrame:
        """A user's CSV/JSONL training table, refused when larger than the upload or row limits."""
        from sap_viz.data.sources import DataFileError, load_user_file

        lim, name = self.limits, Path(path).name
        if Path(path).is_file() and Path(path).stat().st_size > lim.max_upload_bytes:
            raise WorkbenchError(f"{name} is larger than {lim.max_upload_mb} MiB ({env_name('max_upload_mb')})")
        try:
            return load_user_file(path, max_rows=lim.max_train_rows, max_bytes=lim.max_upload_bytes)
        except DataFileError as exc:
            if "max_rows=" in str(exc):
                raise WorkbenchError(f"{name} has more than {lim.max_train_rows:,} rows, the limit ({env_name('max_train_rows')})") from None
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

    def _features_in_chunks(self, texts: list[str], fcfg, check: Callable[[], None]) -> None:
        """Fill the feature cache for ``texts`` a chunk at a time, each chunk under the model lock.

        Between chunks other users' requests get the model and a cancel takes effect; the result is
        stored under the key ``extract_features`` looks up for the whole list, so training reads it back.
        """
        from sap_viz.model.features import _cache_path, _save_cached, extract_features

        if fcfg.position != "last":  # per-token features are cached in another layout: one locked pass
            check()
            with self.lock:
                extract_features(self.lm, texts, fcfg, progress=False)
            return
        path = _cache_path(self.lm, fcfg, texts)
        if path.is_file():
            return
        chunks = []
        for start in range(0, len(texts), FEATURE_CHUNK):
            check()
            with self.lock:
                chunks.append(extract_features(self.lm, texts[start:start + FEATURE_CHUNK], fcfg, use_cache=False, progress=False))
        _save_cached(path, {"features": torch.cat(chunks).contiguous()})

    def train(self, df: pd.DataFrame, fcfg, tcfg, progress: Callable[[float, str], None] | None = None, target_fpr: float | None = None,
              cancel: threading.Event | None = None):
        """Extract features chunk by chunk under the model lock (cached on disk), then train without holding it.

        Setting ``cancel`` stops the run at the next chunk of features or the next epoch with ``TrainingCancelled``.
        """
        from sap_viz.data.sources import dataset_fingerprint, dataset_provenance
        from sap_viz.experiments.pipeline import eval_frame, train_and_evaluate

        self.check_training(df, fcfg, tcfg, target_fpr)

        def check() -> None:
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled("training was stopped; nothing was saved")

        splits = [s for s in ("train", "val", "test", "ood") if (df["split"] == s).any()]
        for i, split in enumerate(splits):
            part = df[df["split"] == split] if split == "train" else eval_frame(df, split)
            if progress:
                progress(0.3 * i / len(splits), f"features for {split} ({len(part)} prompts)")
            self._features_in_chunks(part["text"].tolist(), fcfg, check)
        check()
        provenance = {**dataset_provenance(df), "fingerprint": dataset_fingerprint(df)}
        self.known_data.pop(provenance["fingerprint"], None)
        self.known_data[provenance["fingerprint"]] = df
        while len(self.known_data) > KNOWN_DATA_KEPT:  # oldest first: dicts keep insertion order
            self.known_data.pop(next(iter(self.known_data)))

        def scaled(frac: float, msg: str) -> None:
            check()
            if progress:
                progress(0.3 + 0.7 * frac, msg)

        try:
            trained = train_and_evaluate(self.lm, df, fcfg, tcfg, progress=scaled, provenance=provenance, show_tqdm=False, target_fpr=target_fpr)
        except TrainingCancelled:
            raise
        except ValueError as exc:
            raise WorkbenchError(f"training failed: {exc}") from None
        check()
        return trained

    def save_trained(self, trained, name: str) -> str:
        from sap_viz.experiments.pipeline import save_trained

        target = self._unique_dir(name or f"layer{trained.artifact.layer}-k{trained.artifact.polytope.num_facets}")
        save_trained(trained, target)
        return target.name

    # ------------------------------------------------------------ training view (feature map, facet stats)

    def _view_key(self, art: PolytopeArtifact) -> str:
        return str(art.path or id(art))

    def map_status(self) -> MapStatus:
        art = self.artifact
        if art is None:
            return MapStatus(message="no polytope", error=self.load_error)
        return self._map_status.get(self._view_key(art), MapStatus())

    def training_view(self):
        """The active polytope's training view if ready (else None; call ``start_view_build``)."""
        art = self.artifact
        return None if art is None else self._views.get(self._view_key(art))

    def start_view_build(self, with_umap: bool = True) -> MapStatus:
        """Build (or read from cache) the active polytope's training view in a background thread."""
        from sap_viz.analysis import feature_map

        art = self.artifact
        if art is None:
            return self.map_status()
        key = self._view_key(art)
        with self._state_lock:
            thread = self._map_threads.get(key)
            if thread is not None and thread.is_alive():
                return self._map_status[key]
            status = self._map_status.get(key)
            if status is not None and status.done and (status.umap_done or not with_umap) and status.error is None:
                return status
            status = MapStatus(message="starting")
            self._map_status[key] = status

            def progress(frac: float, msg: str) -> None:
                status.fraction, status.message = frac, msg

            def work() -> None:
                try:
                    t0 = time.perf_counter()
                    view = feature_map.build_view(self.lm, art, self.lock, progress, self.known_data, max_rows=self.map_max_rows)
                    self._views[key] = view
                    status.done = True
                    status.fraction, status.message = 1.0, f"PCA ready ({time.perf_counter() - t0:.0f} s); {view.note}"
                    if with_umap:
                        if "umap" not in view.coords:
                            status.message = "PCA ready; fitting UMAP (once, about a minute on 2 cores)"
                        feature_map.ensure_umap(view)
                        status.umap_done = True
                        status.message = f"UMAP and PCA ready; {view.note}"
                except Exception as exc:  # shown in the UI; the app keeps working without the map
                    log.exception("building the training view failed")
                    status.error = f"{type(exc).__name__}: {exc}"
                    status.message = "failed"

            thread = threading.Thread(target=work, name="sap-viz-map", daemon=True)
            self._map_threads[key] = thread
            thread.start()
        return status

    def wait_for_view(self, timeout: float = 600.0, umap: bool = False):
        """Block until the view (and optionally UMAP) is ready; for tests and scripts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.map_status()
            if status.error:
                raise WorkbenchError(status.error)
            if status.done and (status.umap_done or not umap):
                return self.training_view()
            time.sleep(0.2)
        raise TimeoutError("the training view was not ready in time")

    def warm_up(self) -> None:
        """One tiny generation so the first user request does not pay for lazy initialisation."""
        art = self.artifact
        if art is None:
            return
        from sap_viz.method.generation import generate_one

        with self.lock:
            generate_one(self.lm, art, "Hello", GenerationConfig(max_new_tokens=2), InterventionConfig(mode="monitor"))
