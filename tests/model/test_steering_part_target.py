"""The steering part's target (``SteeringPartConfig.target``) on the embedded model: the model's own refusals are
counted by the text, and too few of them is a clear error that names the way out instead of a direction from noise."""

import pytest

from sap_viz.errors import RecipeError, UserError
from sap_viz.method.configs import SteeringPartConfig
from sap_viz.recipe.steering_part import MIN_OWN_REFUSALS, build_steering_part

pytestmark = pytest.mark.model


def test_an_unknown_target_is_refused_before_any_work():
    with pytest.raises(UserError, match="steering target must be one of own, ours, others, safe"):
        build_steering_part(None, SteeringPartConfig(target="refusals"), progress=False)


def test_too_few_own_refusals_name_the_built_in_target(embedded_lm):
    # 16 harmful train prompts: the embedded model opens fewer than 8 of its answers with a refusal
    with pytest.raises(RecipeError, match=rf"refused only \d+ of 16 .*at least {MIN_OWN_REFUSALS}.*--target ours"):
        build_steering_part(embedded_lm, SteeringPartConfig(prompts_per_label=16), progress=False)
