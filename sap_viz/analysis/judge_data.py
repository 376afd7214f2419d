"""The validation prompts that train the answer judge and those that choose steering settings, kept apart.

Validation harmful and safe prompts are split once (seeded): ``sweep`` prompts choose steering
settings, ``judge`` prompts supply the answers the judge learns from. Neither touches the train
split (steering part) nor the test / OOD splits (evaluation).
"""

from __future__ import annotations

from sap_viz.analysis.answer_judge import AnswerJudge, JudgeConfig
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.responses import AnswerConfig, generate_answers, refusal_halves
from sap_viz.model.loading import LoadedModel


def validation_prompts(n_sweep: int = 40, seed: int = 0, data: DataConfig = DataConfig()) -> dict[str, list[str]]:
    df = build_dataset(data)
    val = df[df["split"] == "val"]
    out: dict[str, list[str]] = {}
    for label, name in (("unsafe", "harmful"), ("safe", "benign")):
        rows = val[val["label"] == label].sample(frac=1.0, random_state=seed)["text"].tolist()
        out[f"sweep_{name}"], out[f"judge_{name}"] = rows[:n_sweep], rows[n_sweep:]
    return out


def fit_judge(lm: LoadedModel, cfg: JudgeConfig | None = None, progress: bool = True) -> AnswerJudge:
    """The judge from the model's answers to the judge half of validation, plus the held-back refusals."""
    cfg = cfg or JudgeConfig()
    prompts = validation_prompts()
    answer_cfg = AnswerConfig()
    decode = lm.tokenizer.decode
    harmful = [decode(a, skip_special_tokens=True) for a in generate_answers(lm, prompts["judge_harmful"], answer_cfg, progress)]
    harmless = [decode(a, skip_special_tokens=True) for a in generate_answers(lm, prompts["judge_benign"], answer_cfg, progress)]
    return AnswerJudge.fit(lm, harmful, harmless, refusal_halves()[1], cfg)
