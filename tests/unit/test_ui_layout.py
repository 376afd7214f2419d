"""The page's layout, built on the tiny model without a server: every child of the tab bar is a tab."""

from __future__ import annotations

import gradio as gr
import torch

from sap_viz.app_state.workbench import Workbench
from sap_viz.method.artifact import save_polytope
from sap_viz.ui.app import build_app
from tests.conftest import linear_artifact


def test_tab_bar_holds_only_tabs(tiny_lm, tmp_path):
    folder = tmp_path / "polytopes"
    art = linear_artifact(tiny_lm, 1, torch.randn(3, tiny_lm.hidden_size), torch.zeros(3))
    save_polytope(folder / "tiny", art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}}, art.facets)
    demo = build_app(Workbench(tiny_lm, folder / "tiny", folder))
    tabs = [block for block in demo.blocks.values() if isinstance(block, gr.Tabs)]
    assert len(tabs) == 1
    children = tabs[0].children
    # A State or Timer placed directly under gr.Tabs counts as a tab in the page and shifts the later ones.
    assert all(isinstance(child, gr.Tab) for child in children), [type(c).__name__ for c in children]
    assert [child.label for child in children] == ["Explore / Generate", "Feature map", "Facets", "Train & calibrate", "Compare",
                                                   "Monitor"]
