"""The model card of an exported polytope: README.md with the Hub's YAML front matter.

Why generated: a card written by hand drifts from the files beside it. Everything here is read from
the polytope's own JSON (facet labels and scorecards, measured metrics, calibration, the limits measured
on sets written by others), so the card says what the uploaded files do. The front matter is written by
``huggingface_hub.ModelCardData``, the Hub's own serialiser, so the Hub reads ``library_name``,
``base_model``, ``license`` and ``tags`` as it expects.
"""

from __future__ import annotations

from huggingface_hub import ModelCardData

from sap_viz.analysis.metrics import METRIC_COLUMNS, metrics_rows
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.measured_file import known_limits as measured_known_limits
from sap_viz.method.measured_file import measured_parts
from sap_viz.method.training_record import RECIPE_FILE
from sap_viz.tables import format_value, markdown_cell, markdown_table

LIBRARY_NAME = "sap-viz"
LICENSE = "apache-2.0"  # the license of sap-viz and of everything it writes into a polytope folder
TAGS = ["safety", "safety-polytope", "activation-monitoring", "steering", "sap-viz"]
PAPER = "Learning Safety Constraints for Large Language Models (Chen, As, Krause, ICML 2025, arXiv 2505.24445)"
FACET_COLUMNS = ["#", "name", "category", "source", "precision", "recall", "look-alike false alarms", "name score"]


def card_metadata(recipe: dict) -> ModelCardData:
    """The YAML front matter: what the Hub indexes the repo by."""
    base = recipe["model"].get("base_model")
    return ModelCardData(library_name=LIBRARY_NAME, license=LICENSE, tags=list(TAGS), **({"base_model": base} if base else {}))


def facet_rows(art: PolytopeArtifact) -> list[dict]:
    """One row per facet: its label and, when scored, its check-set scorecard."""
    rows = []
    for facet in art.facets:
        card = facet.get("scorecard") or {}
        rows.append({"#": facet["index"], "name": facet["name"], "category": facet.get("category"), "source": facet.get("source"),
                     "precision": card.get("precision"), "recall": card.get("recall"),
                     "look-alike false alarms": card.get("own_lookalike_false_alarms"), "name score": card.get("name_score")})
    return rows


def _metric_rows(art: PolytopeArtifact) -> list[dict]:
    rows = metrics_rows(art.meta.get("metrics") or {})
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]


def _source_rows(recipe: dict) -> list[dict]:
    by_source = recipe["data"].get("rows_by_source") or {}
    return [{"source": name, "safe": counts.get("safe", 0), "unsafe": counts.get("unsafe", 0)} for name, counts in by_source.items()]


def known_limits(art: PolytopeArtifact, recipe: dict) -> list[str]:
    """What the polytope does not do, measured where the files say so, and what follows from how it was made."""
    measured = measured_parts(art)  # measured.json: figures measured on this very polytope, else "not measured"
    limits = measured_known_limits(art)
    facets = measured.get("facets")
    if facets is not None:
        limits.append(f"{facets.sentence} A facet's name is its claim, its scorecard above is what it does.")
    else:
        limits.append("Its facets were not scored on the facet check set (sap-viz measure --part facets).")
    if "steering" in measured:
        limits.append(f"Steering: {measured['steering'].sentence}")
    if "answer_check" in measured:
        limits.append(f"The answer check {measured['answer_check'].sentence}.")
    limits += [
        f"It reads one model only: {recipe['model']['id']} (weights fingerprint {recipe['model']['fingerprint']}); "
        "sap-viz refuses it on a model with another hidden size and warns on other weights.",
        f"It reads the hidden state at decoder block {recipe['features']['layer']} ({recipe['features']['position']}) of the "
        f"prompt, cut to {recipe['features']['max_tokens']} tokens: it judges requests, not answers; a harmful request "
        "hidden inside a story or a role-play frame is often missed.",
        "The training data is English; other languages were not measured.",
    ]
    target = (recipe.get("calibration") or {}).get("target_fpr")
    if target:
        limits.append(f"Its boundary was set to flag {target:.0%} of the safe validation prompts: expect false alarms of that order "
                      "on prompts like them, more on prompts with alarming words.")
    return limits


def render_card(art: PolytopeArtifact, recipe: dict, repo_id: str | None = None) -> str:
    """README.md of an exported polytope folder."""
    feats, model, data = recipe["features"], recipe["model"], recipe["data"]
    name = repo_id or "path/to/this-folder"
    title = f"Safety polytope for {model.get('base_model') or model['id']}: layer {feats['layer']}, {feats['position']}"
    k = art.polytope.num_facets
    steering = art.steering
    lines = [
        "---", card_metadata(recipe).to_yaml().strip(), "---", "",
        f"# {markdown_cell(title)}", "",
        f"A [Safety Polytope]({'https://arxiv.org/abs/2505.24445'}) made with [sap-viz](https://pypi.org/project/sap-viz/): "
        f"{k} facets over the hidden state at the output of decoder block {feats['layer']} (0-based) of "
        f"`{model['id']}`. A prompt is flagged when any facet's violation is ≥ 0; the facet that fires names the reason. "
        + ("A steering part (`steering/`) moves a flagged prompt's answer toward a refusal along a learned direction at "
           f"block {steering.layer}." if steering is not None else "This polytope has no steering part: it monitors and refuses, "
                                                                   "it does not steer."),
        "",
        "## Use", "",
        "```bash",
        "pip install sap-viz",
        "sap-viz score --polytope " + name + " --input prompts.jsonl        # one JSON line per prompt",
        "sap-viz generate --polytope " + name + " --prompt \"How do I pick a lock?\" --mode steer",
        "sap-viz serve --polytope " + name + "                                # OpenAI-compatible /v1/chat/completions",
        "```", "",
        "Files: `polytope.safetensors` (facets φ, offsets ξ, the concept encoder, normalisation), `polytope.json` "
        "(settings, metrics, calibration), `facets.json` (facet labels and their scorecards), "
        + ("`steering/` (steering polytope and refusal direction), " if steering is not None else "")
        + f"`{RECIPE_FILE}` (everything needed to train it again). Only safetensors and JSON: nothing is unpickled.", "",
        "## Facets", "",
        "Scorecards are measured on the facet check set (evaluation only): precision and recall for the category the name "
        "claims, false alarms on safe prompts that look like that category, and how well the name predicts where the facet fires.",
        "",
        markdown_table(facet_rows(art), FACET_COLUMNS), "",
        "## Metrics", "",
        "SaP beside baselines fitted on the same features (val: threshold chosen there; test: held out; ood: harmful sources never "
        "trained on).", "",
        markdown_table(_metric_rows(art), METRIC_COLUMNS), "",
    ]
    calib = art.meta.get("generation_calibration") or {}
    if calib:
        lines += [f"Generation boundary (answer tokens): {format_value(calib.get('threshold'))}; prompt-span boundary: "
                  f"{format_value(calib.get('span_threshold'))} (calibrated on benign validation prompts).", ""]
    lines += [
        "## Training", "",
        markdown_table([
            {"setting": "model", "value": model["id"]},
            {"setting": "model revision", "value": model.get("revision")},
            {"setting": "weights fingerprint", "value": model["fingerprint"]},
            {"setting": "layer", "value": f"{feats['layer']} (output of decoder block {feats['layer']}, 0-based)"},
            {"setting": "position", "value": feats["position"]},
            {"setting": "chat template", "value": feats["chat_template"]},
            {"setting": "facets", "value": f"{k} ({recipe['train'].get('facet_mode')})"},
            {"setting": "feature dim", "value": recipe["train"].get("feature_dim")},
            {"setting": "epochs", "value": recipe["train"].get("epochs")},
            {"setting": "seed", "value": recipe["train"].get("seed")},
            {"setting": "target false-positive rate", "value": (recipe.get("calibration") or {}).get("target_fpr")},
            {"setting": "rows", "value": data.get("n_rows")},
            {"setting": "data fingerprint", "value": data.get("fingerprint")},
        ], ["setting", "value"]), "",
        "Rows per source:", "",
        markdown_table(_source_rows(recipe), ["source", "safe", "unsafe"]), "",
        "Train it again (same data, same seed):", "",
        "```bash", f"sap-viz train --config {RECIPE_FILE} --output my-polytope", "```", "",
        "## Known limits", "",
        *[f"- {markdown_cell(line, 2000)}" for line in known_limits(art, recipe)], "",
        "## Citation", "",
        f"The method: {PAPER}.", "",
    ]
    return "\n".join(lines)
