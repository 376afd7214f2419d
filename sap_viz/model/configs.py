"""The model and feature settings, free of torch so the CLI's parser takes its defaults from them.

Why a module of its own: ``python -m sap_viz --help`` must answer at once, and the CLI's defaults
must be these dataclasses' defaults, not copies of their numbers (``tests/unit/test_cli_flags.py``).
``loading.py`` and ``features.py`` re-export what they used to define.
"""

from __future__ import annotations

from dataclasses import dataclass

from sap_viz.errors import UserError

DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class ModelConfig:
    name: str = DEFAULT_MODEL  # "default", a Hugging Face id or a local directory
    dtype: str = "float32"  # float32 | bfloat16 | float16 | auto
    device: str = "cpu"  # cpu | cuda | auto (auto = device_map="auto" through accelerate)
    layers_path: str | None = None
    trust_remote_code: bool = False


# What a polytope reads at each token t of a prompt (and of its answer):
#   last       the block-L state h_t alone; a prompt's feature is h at its last token;
#   last+mean  [h_t ‖ m], m = the mean block-L state over the user's own tokens (the request text,
#              not the chat template), fixed once the prompt is read. Issue 16's leave-one-source-out
#              comparison found it generalises to unseen sources better than the last token alone.
POSITIONS = ("last", "last+mean")


@dataclass(frozen=True)
class FeatureConfig:
    """What a polytope reads; the defaults are the shipped polytope's (block 22 of SmolLM2-135M, last ‖ mean)."""

    layer: int = 22
    chat_template: bool = True
    max_tokens: int = 256
    batch_size: int = 16
    position: str = "last+mean"

    def __post_init__(self) -> None:
        check_position(self.position)


def check_position(position: str) -> str:
    if position not in POSITIONS:
        raise UserError(f"position must be one of {', '.join(POSITIONS)}, got {position!r}")
    return position
