"""Shared fixtures: tiny randomly initialised models (seconds, no download) and a byte tokenizer."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Tests never touch the user's cache: one cache per test session, shared with app subprocesses.
if "SAP_VIZ_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="sap-viz-test-cache-")
    os.environ["SAP_VIZ_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
# ... nor the user's data folder (owner polytopes, labels, proposals): one per test session, shared the same way.
if "SAP_VIZ_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="sap-viz-test-home-")
    os.environ["SAP_VIZ_HOME"] = _home
    atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from sap_viz.model.loading import LoadedModel, model_identity, weights_fingerprint
from sap_viz.settings import DEFAULT_POLYTOPE
from tests.app_server import AppServer

VOCAB = 260  # 256 bytes + 4 specials
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    # Byte-level: every byte is one token, so any text round-trips without a trained vocabulary.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<pad>", "bos_token": "<|im_start|>",
                             "additional_special_tokens": ["<unk>"]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(family: str):
    common = dict(vocab_size=VOCAB, eos_token_id=256, pad_token_id=257, bos_token_id=258)
    if family == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=512, **common)
    if family == "qwen2":
        return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=512, **common)
    if family == "gemma":
        return GemmaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8, max_position_embeddings=512, **common)
    if family == "gpt2":
        return GPT2Config(n_embd=32, n_layer=4, n_head=4, n_positions=512, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                             max_position_embeddings=512, **common)
    raise ValueError(family)


# SAP_VIZ_TEST_DEVICE=cuda runs the tiny-model generation and feature tests on a GPU.
TEST_DEVICE = os.environ.get("SAP_VIZ_TEST_DEVICE", "cpu")


def make_tiny_lm(family: str = "llama", seed: int = 0, device: str = TEST_DEVICE) -> LoadedModel:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family)).to(device)
    model.eval()
    model.requires_grad_(False)
    tok = byte_tokenizer()
    assert len(tok) <= VOCAB
    return LoadedModel(model=model, tokenizer=tok, model_id=f"tiny-{family}", fingerprint=weights_fingerprint(model))


@pytest.fixture(scope="session")
def embedded_lm() -> LoadedModel:
    """The real embedded model (converted once per test session into the session cache)."""
    from sap_viz.model.loading import load_model

    return load_model()


@pytest.fixture(scope="session")
def tiny_lm() -> LoadedModel:
    return make_tiny_lm("llama", device="cpu")


FAMILIES = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]


def linear_artifact(lm: LoadedModel, layer: int, phi: torch.Tensor, xi: torch.Tensor):
    """A linear-encoder polytope with chosen facets (no normalisation), for exact geometric tests."""
    from sap_viz.method.artifact import PolytopeArtifact, default_facets
    from sap_viz.method.polytope import SafetyPolytope

    poly = SafetyPolytope(lm.hidden_size, phi.shape[0], encoder="linear").to(phi.device)
    with torch.no_grad():
        poly.phi.copy_(phi)
        poly.xi.copy_(xi)
    poly.requires_grad_(False)
    meta = {"layer": layer, "chat_template": True, "position": "last", "max_tokens": 256,
            "model": model_identity(lm)}
    return PolytopeArtifact(poly, meta, default_facets(phi.shape[0]))


def separating_artifact(lm: LoadedModel, layer: int, unsafe_text: str, safe_text: str):
    """Facet 0 separates the two prompts' last-token states: the first violates, the second does not."""
    from sap_viz.model.features import FeatureConfig, extract_features

    feats = extract_features(lm, [unsafe_text, safe_text], FeatureConfig(layer=layer, position="last"), use_cache=False, progress=False)
    feats = feats.to(lm.device)
    direction = feats[0] - feats[1]
    direction = direction / direction.norm()
    mid = float(direction @ (feats[0] + feats[1]) / 2)
    torch.manual_seed(1)
    other = torch.randn(lm.hidden_size).to(lm.device)
    other = other / other.norm()
    phi = torch.stack([direction, other])
    xi = torch.tensor([mid, float(other @ feats[1]) + 1e3])  # facet 1 never fires
    return linear_artifact(lm, layer, phi, xi)


#: The folder of each tier, and the markers a test in it carries. The fast tier (tests/unit, plain
#: ``pytest``) holds every test that needs no model, server, browser or load; the others run with
#: ``pytest tests`` (the README's test command) or one folder at a time.
HEAVY_MARKERS = {"model", "server", "browser", "load"}
TIERS = {"unit", "model", "server", "browser", "load"}


# ---------------------------------------------------------------- a running app on a copy of the shipped polytope

SHIPPED_POLYTOPE = Path(os.environ.get("SAP_VIZ_TEST_POLYTOPE") or DEFAULT_POLYTOPE)


def _polytope_digest(directory: Path) -> str:
    return hashlib.sha256(b"".join((directory / f).read_bytes() for f in ("facets.json", "polytope.json", "polytope.safetensors"))
                          ).hexdigest()


@contextlib.contextmanager
def start_app_server(root: Path, env: dict[str, str | None] | None = None, polytopes: tuple[str, ...] = ("test-polytope",),
                     prepare: Callable[[Path], object] | None = None, startup_timeout: float = 400) -> Iterator[AppServer]:
    """``app.py`` started on copies of the shipped polytope in ``root/polytopes/<name>`` (the first one active).

    Tests label, upload and delete, so they get copies; the shipped polytope is checked unchanged afterwards.
    ``env`` is added to ``SAP_VIZ_POLYTOPE`` and ``SAP_VIZ_MAP_WARMUP=0`` (a value of None leaves that name out);
    ``prepare(root)`` runs before the start (extra files). The server has ``root``, ``folder`` (the polytopes) and
    ``copy`` (the active polytope); its log is ``root/app.log``.
    """
    assert (SHIPPED_POLYTOPE / "polytope.safetensors").is_file(), f"the shipped polytope is missing: {SHIPPED_POLYTOPE}"
    before = _polytope_digest(SHIPPED_POLYTOPE)
    folder = root / "polytopes"
    for name in polytopes:
        shutil.copytree(SHIPPED_POLYTOPE, folder / name)
    if prepare is not None:
        prepare(root)
    copy = folder / polytopes[0]
    values = {"SAP_VIZ_POLYTOPE": str(copy), "SAP_VIZ_MAP_WARMUP": "0", **(env or {})}
    with AppServer({k: v for k, v in values.items() if v is not None}, startup_timeout=startup_timeout,
                   log_path=root / "app.log") as srv:
        srv.root, srv.folder, srv.copy = root, folder, copy  # type: ignore[attr-defined]
        yield srv
    assert _polytope_digest(SHIPPED_POLYTOPE) == before, "the tests modified the shipped polytope"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """Factory for one module's app: ``with app_server(env={...}, polytopes=(...)) as srv`` (see ``start_app_server``)."""

    def start(**kwargs) -> contextlib.AbstractContextManager[AppServer]:
        return start_app_server(tmp_path_factory.mktemp("app"), **kwargs)

    return start


def pytest_collection_modifyitems(config, items):
    """Mark each test by what it needs, then check that it sits in the matching tier's folder.

    ``model``: the embedded model, in-process or in a started app; ``server``: a started app. A test in
    the wrong folder stops the run with its name, so the tiers cannot drift apart as tests are added.
    """
    misplaced = []
    for item in items:
        names = set(item.fixturenames)
        if names & {"server", "app_server"}:
            item.add_marker(pytest.mark.server)
        if names & {"server", "embedded_lm"}:
            item.add_marker(pytest.mark.model)
        tier = item.path.parent.name
        needs = {m.name for m in item.iter_markers()} & HEAVY_MARKERS
        if tier == "unit" and needs:
            misplaced.append(f"{item.nodeid}: needs {', '.join(sorted(needs))}, so it belongs in a slower tier, not tests/unit")
        elif tier in TIERS - {"unit"} and not needs:
            misplaced.append(f"{item.nodeid}: needs no model, server, browser or load, so it belongs in tests/unit")
        else:  # a lighter test may share a heavier tier's app (one start); a heavier one never hides in a lighter tier
            for heavy in ("browser", "load"):
                if heavy in needs and tier != heavy:
                    misplaced.append(f"{item.nodeid}: needs {heavy}, so it belongs in tests/{heavy}")
    if misplaced:
        raise pytest.UsageError("tests in the wrong tier:\n" + "\n".join(misplaced))


def pytest_unconfigure(config):
    """Let the app's background threads (streams, worked examples, maps) finish their model work before exit.

    A daemon thread still inside torch when the interpreter shuts down aborts the whole process (seen once
    in a CI run: rc 134 after every test had passed), so the run waits for them, two minutes at most.
    """
    import threading
    import time

    deadline = time.monotonic() + 120
    for thread in threading.enumerate():
        if thread.name.startswith("sap-viz") and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
