import pytest
import torch

from sap_viz.model.hooks import capture_and_stop, count_hooks, residual_hook
from sap_viz.model.layers import find_decoder_layers, resolve_layer
from tests.conftest import FAMILIES, make_tiny_lm


@pytest.mark.parametrize("family", FAMILIES)
def test_finds_blocks_and_hook_matches_hidden_states(family):
    lm = make_tiny_lm(family)
    blocks = find_decoder_layers(lm.model)
    assert len(blocks) == 4
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    ref = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
    ran: list[int] = []
    for i, block in enumerate(blocks):
        block.register_forward_pre_hook(lambda *_a, i=i: ran.append(i))
    with capture_and_stop(lm.model, 1) as captured:
        lm.model(input_ids=ids)  # the StopForward it raises ends the block and is swallowed
    # Convention: layer L = output of block L = hidden_states[L + 1].
    torch.testing.assert_close(captured[1], ref[2])
    assert ran == [0, 1]  # early exit: blocks 2 and 3 never ran
    ran.clear()
    with capture_and_stop(lm.model, [2, 0]) as captured:
        lm.model(input_ids=ids)
    torch.testing.assert_close(captured[0], ref[1])
    torch.testing.assert_close(captured[2], ref[3])
    assert ran == [0, 1, 2]  # stops after the deepest block asked for
    assert count_hooks(lm.model) == 0
    with pytest.raises(RuntimeError, match="after"):  # any other error still propagates, hooks still removed
        with capture_and_stop(lm.model, 1):
            raise RuntimeError("after")
    assert count_hooks(lm.model) == 0


def test_explicit_path_and_errors(tiny_lm):
    assert find_decoder_layers(tiny_lm.model, "model.layers") is tiny_lm.model.model.layers
    with pytest.raises(ValueError, match="does not name"):
        find_decoder_layers(tiny_lm.model, "model.nothing")
    with pytest.raises(ValueError, match="Could not find"):
        find_decoder_layers(torch.nn.Linear(2, 2))
    assert resolve_layer(tiny_lm.model, -1) == 3
    with pytest.raises(ValueError, match="out of range"):
        resolve_layer(tiny_lm.model, 4)


def test_hook_removed_after_exception(tiny_lm):
    def boom(hidden):
        raise RuntimeError("inside hook")

    with pytest.raises(RuntimeError, match="inside hook"):
        with residual_hook(tiny_lm.model, 0, boom):
            assert count_hooks(tiny_lm.model) == 1
            tiny_lm.model(input_ids=torch.tensor([[1, 2, 3]]))
    assert count_hooks(tiny_lm.model) == 0


def test_residual_edit_changes_logits(tiny_lm):
    ids = torch.tensor([[1, 2, 3]])
    base = tiny_lm.model(input_ids=ids).logits
    with residual_hook(tiny_lm.model, 1, lambda h: h * 0):
        edited = tiny_lm.model(input_ids=ids).logits
    assert not torch.allclose(base, edited)
    torch.testing.assert_close(tiny_lm.model(input_ids=ids).logits, base)
