"""Forward hooks on decoder blocks, always as context managers that clean up.

A decoder block returns a Tensor in transformers 5 and a tuple ``(hidden, ...)`` in older versions;
``block_hidden`` / ``with_block_hidden`` hide that difference so hooks work on any version.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from sap_viz.model.layers import find_decoder_layers

# Signature of a residual-stream editor: gets the block output (batch, seq, d) and returns the
# tensor to put back (or None to leave it unchanged).
ResidualFn = Callable[[torch.Tensor], torch.Tensor | None]


def block_hidden(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[return-value]


def with_block_hidden(output: object, hidden: torch.Tensor) -> object:
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


class StopForward(Exception):
    """Raised by an early-exit hook: the blocks after layer L are never run."""


@dataclass
class HookHandles:
    handles: list[torch.utils.hooks.RemovableHandle] = field(default_factory=list)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _residual_hook(fn: ResidualFn) -> Callable:
    # Bound to the thread that registers it: another thread's forward pass on the same shared model (a second
    # workbench, a background build) must neither be edited nor stopped early by this hook, nor feed it states.
    owner = threading.get_ident()

    def hook(_module: nn.Module, _inputs: object, output: object) -> object:
        if threading.get_ident() != owner:
            return output
        new = fn(block_hidden(output))
        return output if new is None else with_block_hidden(output, new)

    hook._sap_viz = True  # type: ignore[attr-defined]
    return hook


@contextmanager
def residual_hook(
    model: nn.Module, layer: int, fn: ResidualFn, layers_path: str | None = None
) -> Iterator[HookHandles]:
    """Run ``fn`` on the output of decoder block ``layer`` for every forward pass this thread runs inside the block."""
    block = find_decoder_layers(model, layers_path)[layer]
    handles = HookHandles([block.register_forward_hook(_residual_hook(fn))])
    try:
        yield handles
    finally:
        handles.remove()


@contextmanager
def capture_and_stop(
    model: nn.Module, layers: int | Sequence[int], layers_path: str | None = None
) -> Iterator[dict[int, torch.Tensor]]:
    """Capture the outputs of blocks ``layers`` and abort the forward pass after the deepest one (early exit).

    The one early-exit path (features, generation's pre-pass, attribution): the blocks after it never run,
    which is most of the cost. The forward call must be the last statement in the block: the ``StopForward``
    it raises ends the block and is swallowed here. Tensors are kept as they come, so run it under
    ``torch.no_grad()`` unless gradients are wanted (attribution wants them).
    Usage: ``with capture_and_stop(m, L) as out: m(**batch)``, then ``out[L]``.
    """
    wanted = [layers] if isinstance(layers, int) else list(layers)
    deepest = max(wanted)
    captured: dict[int, torch.Tensor] = {}

    def recorder(layer: int) -> ResidualFn:
        def fn(hidden: torch.Tensor) -> None:
            captured[layer] = hidden
            if layer == deepest:
                raise StopForward

        return fn

    try:
        with ExitStack() as stack:
            for layer in dict.fromkeys(wanted):
                stack.enter_context(residual_hook(model, layer, recorder(layer), layers_path))
            yield captured
    except StopForward:
        pass


def count_hooks(model: nn.Module) -> int:
    """Number of sap-viz hooks registered anywhere in ``model`` (tests use it to prove cleanup).

    transformers registers hooks of its own, so only ours (tagged ``_sap_viz``) are counted.
    """
    return sum(
        getattr(h, "_sap_viz", False)
        for m in model.modules()
        for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())
    )
