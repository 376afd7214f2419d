"""Batch scoring on Ray (``sap-viz score --engine ray``): one model per worker, results in input order.

Why Ray: an auditor with 100,000 prompts waits hours on one machine; Ray spreads the same scoring over
every core of a machine or every node of a cluster without a queue or a file server. Each worker loads
the model once and scores chunks with :func:`sap_viz.method.scoring.prompt_scores`, the one local
path, so a score is the same number either way.

Why the chunks follow the local batches: the local path sorts the prompts by token length and cuts
the sorted list into padded batches; a different batch has other padding widths, and a float32
forward pass over other widths rounds differently in the last bits. The driver therefore tokenizes
the prompts the same way, orders them the same way, and cuts the list only at the local path's batch
boundaries: every worker runs exactly the batches the local path would have run.

The polytope travels to the workers as its safetensors and JSON bytes and is loaded there with
``load_polytope`` (the same checks as any load); nothing of ours is pickled into a file. Ray is an
optional extra (``pip install sap-viz[ray]``) and is imported only when this engine is chosen.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from sap_viz.errors import RayScoringError, UserError
from sap_viz.files import directory_lock
from sap_viz.method.artifact import FACETS_FILE, META_FILE, TENSORS_FILE, PolytopeArtifact, load_for_model, load_polytope
from sap_viz.method.scoring import prompt_scores
from sap_viz.model.features import plan_batches
from sap_viz.model.loading import DEFAULT_MODEL, LoadedModel, ModelConfig, cache_dir, default_model_dir, load_model
from sap_viz.model.prompts import encode_prompt

log = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'sap-viz[ray]'  (or: pip install ray)"


@dataclass(frozen=True)
class RayScoringConfig:
    """Where and how wide to score. ``address`` None starts a local Ray with this machine's cores."""

    address: str | None = None  # "auto" = the cluster this node belongs to; ray://host:10001 = Ray Client
    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int = 16  # the local path's batch size: chunks are whole local batches
    batches_per_chunk: int = 2  # local batches per Ray task (small: an idle worker takes the next one)

    def validate(self) -> None:
        if self.workers is not None and not 1 <= self.workers <= 4096:
            raise UserError(f"--workers must be between 1 and 4096, got {self.workers}")
        if not 0 < self.cpus_per_worker <= 1024 or not 0 <= self.gpus_per_worker <= 64:
            raise UserError("cpus per worker must be in (0, 1024] and GPUs per worker in [0, 64]")
        if not 1 <= self.batch_size <= 4096 or not 1 <= self.batches_per_chunk <= 10_000:
            raise UserError("--batch-size must be between 1 and 4096")


@dataclass
class RayScoringResult:
    violations: torch.Tensor  # N × K at the last prompt token, row i = texts[i]
    span_peaks: list[float | None]  # the peak over each text's user tokens (the prompt verdict's second reading)
    rows_by_worker: dict[str, int]  # "host:pid" → rows it scored
    seconds: float  # from the first chunk sent to the last result (workers already loaded)
    startup_seconds: float  # Ray start and model loads
    warnings: list[str] = field(default_factory=list)

    @property
    def prompts_per_second(self) -> float:
        return len(self.violations) / self.seconds if self.seconds > 0 else float("inf")


def polytope_files(directory: str | Path) -> dict[str, bytes]:
    """The files scoring needs (the steering part is not), as bytes for the object store."""
    directory = Path(directory)
    return {name: (directory / name).read_bytes() for name in (TENSORS_FILE, META_FILE, FACETS_FILE) if (directory / name).is_file()}


def load_scoring_model(config: ModelConfig) -> LoadedModel:
    """Load the model in a worker; the embedded one is converted once per machine, under a lock, so two
    workers starting together never convert into the same folder at once."""
    if config.name == DEFAULT_MODEL:
        with directory_lock(cache_dir()):
            default_model_dir()
    return load_model(config)


class ScoringWorker:
    """One Ray actor: a model and the polytope, scoring chunks with the local path."""

    def __init__(self, model: dict, files: dict[str, bytes], batch_size: int, threads: int):
        torch.set_num_threads(max(1, threads))
        self.lm = load_scoring_model(ModelConfig(**model))
        folder = Path(tempfile.mkdtemp(prefix="sap-viz-ray-polytope-"))
        try:
            for name, data in files.items():
                (folder / name).write_bytes(data)
            self.art = load_for_model(folder, self.lm)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.batch_size = batch_size
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    def info(self) -> dict:
        return {"worker": self.name, "warnings": list(self.art.warnings)}

    def score(self, index: int, texts: list[str]) -> tuple[int, np.ndarray, list[float | None], str]:
        scores = prompt_scores(self.lm, self.art, texts, progress=False, batch_size=self.batch_size)
        return index, scores.last.numpy().astype(np.float32), scores.span_peak, self.name


def plan_chunks(lm_tokenizer, art: PolytopeArtifact, texts: list[str], batch_size: int, batches_per_chunk: int) -> list[list[int]]:
    """Indices of ``texts`` per chunk: the local path's batches (same order, same boundaries), a few per chunk."""

    cfg = art.feature_config(batch_size)
    lengths = [len(encode_prompt(lm_tokenizer, t, cfg.chat_template, cfg.max_tokens).ids) for t in texts]
    batches = plan_batches(lengths, batch_size)
    return [sum(batches[k:k + batches_per_chunk], []) for k in range(0, len(batches), batches_per_chunk)]


def _tokenizer(config: ModelConfig):
    path = str(default_model_dir()) if config.name == DEFAULT_MODEL else config.name
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayScoringError(f"--engine ray needs Ray: {RAY_EXTRA}") from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds when nothing listens at a ``host:port`` or ``ray://host:port`` address (Ray itself retries for minutes)."""

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayScoringError(f"nothing answers at {address} ({exc.strerror or exc}): is the Ray head running there "
                              "(ray start --head), and is the port right?") from None


def start_ray(cfg: RayScoringConfig) -> bool:
    """Connect to ``cfg.address`` or start a local Ray; True when this call started it (and should stop it)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if cfg.address:
        check_reachable(cfg.address)
    try:
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=256 << 20, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {cfg.address!r}" if cfg.address else "a local Ray"
        raise RayScoringError(f"could not start or reach {where}: {_first_line(exc)}") from None
    return True


def score_texts_ray(texts: list[str], model: ModelConfig, polytope: str | Path, cfg: RayScoringConfig = RayScoringConfig(),
                    art: PolytopeArtifact | None = None) -> RayScoringResult:
    """N × K violations of ``texts`` computed on Ray workers, row for row what ``score_texts`` gives."""
    cfg.validate()
    if cfg.address:
        check_reachable(cfg.address)  # before minutes of model work
    art = art or load_polytope(polytope)
    if not texts:
        return RayScoringResult(torch.zeros(0, art.polytope.num_facets), [], {}, 0.0, 0.0)
    t0 = time.perf_counter()
    if model.name == DEFAULT_MODEL:
        default_model_dir()  # convert once here, before the workers ask for it
    chunks = plan_chunks(_tokenizer(model), art, texts, cfg.batch_size, cfg.batches_per_chunk)
    ray = _import_ray()
    from ray.util import ActorPool

    started = start_ray(cfg)
    actors = []
    try:
        per_worker = "GPU" if cfg.gpus_per_worker else "CPU"
        available = ray.cluster_resources().get(per_worker, 1.0) / (cfg.gpus_per_worker or cfg.cpus_per_worker)
        n_workers = max(1, min(cfg.workers or int(available), len(chunks)))
        files = ray.put(polytope_files(polytope))
        actor_cls = ray.remote(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker)(ScoringWorker)
        threads = max(1, int(cfg.cpus_per_worker))
        actors = [actor_cls.remote(asdict(model), files, cfg.batch_size, threads) for _ in range(n_workers)]
        infos = ray.get([a.info.remote() for a in actors])
        warnings = sorted({w for info in infos for w in info["warnings"]})
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = torch.empty(len(texts), art.polytope.num_facets)
        peaks: list[float | None] = [None] * len(texts)
        done: dict[str, int] = {}
        pool = ActorPool(actors)
        jobs = [(k, [texts[i] for i in chunk]) for k, chunk in enumerate(chunks)]
        for k, viol, chunk_peaks, worker in pool.map_unordered(lambda actor, job: actor.score.remote(*job), jobs):
            out[torch.tensor(chunks[k])] = torch.tensor(viol)
            for i, peak in zip(chunks[k], chunk_peaks, strict=True):
                peaks[i] = peak
            done[worker] = done.get(worker, 0) + len(chunks[k])
        return RayScoringResult(out, peaks, done, time.perf_counter() - t1, startup, warnings)
    except ray.exceptions.RayError as exc:  # a worker failed to load or to score: its own message, not Ray's trace
        raise RayScoringError(f"a Ray worker failed: {_first_line(exc)}") from None
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
