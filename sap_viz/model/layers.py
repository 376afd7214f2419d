"""Find the decoder blocks of any causal LM, and name the layer convention once.

Layer convention used everywhere in sap-viz: **layer L is the residual stream at the output of
decoder block L (0-based)**, i.e. ``output_hidden_states[L + 1]`` in transformers. Training,
monitoring and steering all read and write this same tensor (the reference code trains on block
L-1 and steers after block L; we don't).
"""

from __future__ import annotations

from torch import nn

from sap_viz.errors import UserError

LAYER_CONVENTION = "output of decoder block L (0-based) = hidden_states[L + 1]"

# Attribute paths to the block list, tried in order. Covers Llama/Mistral/Qwen2/Gemma (model.layers),
# GPT-2/GPT-J/Falcon/Bloom (transformer.h), GPT-NeoX/Pythia (gpt_neox.layers), OPT (model.decoder.layers),
# MPT (transformer.blocks) and multimodal wrappers (model.language_model.layers).
_CANDIDATE_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "language_model.model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.blocks",
    "transformer.layers",
    "layers",
)


def _get_path(obj: object, path: str) -> object | None:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_decoder_layers(model: nn.Module, layers_path: str | None = None) -> nn.ModuleList:
    """Return the ModuleList of decoder blocks; ``layers_path`` (e.g. ``"model.layers"``) overrides the search."""
    paths = (layers_path,) if layers_path else _CANDIDATE_PATHS
    for path in paths:
        found = _get_path(model, path)
        if isinstance(found, nn.ModuleList) and len(found) > 0:
            return found
    if layers_path:
        raise UserError(f"layers_path {layers_path!r} does not name a non-empty nn.ModuleList on {type(model).__name__}")
    raise UserError(
        f"Could not find the decoder blocks of {type(model).__name__}; pass layers_path "
        f"(tried {', '.join(_CANDIDATE_PATHS)})"
    )


def num_layers(model: nn.Module, layers_path: str | None = None) -> int:
    return len(find_decoder_layers(model, layers_path))


def resolve_layer(model: nn.Module, layer: int, layers_path: str | None = None) -> int:
    """Accept negative indices like Python lists; reject out-of-range ones with a clear message."""
    n = num_layers(model, layers_path)
    idx = layer + n if layer < 0 else layer
    if not 0 <= idx < n:
        raise UserError(f"layer {layer} is out of range for a model with {n} decoder blocks (0..{n - 1})")
    return idx
