"""How much category information carries from the built-in training rows to the check set: a diagnostic ceiling.

    .venv/bin/python -m research.policy_facets.transfer_probe

A 10-way logistic regression on layer-22 features of the built-in *training* split's unsafe rows (rubric
categories), scored on the validation split and on the check set's unsafe requests. It is a linear
classifier on the same features the facets read, given the category outright, so policy facets trained
on the same rows are not expected to name the check set's categories better than it does. The check set
is only scored here, never fitted.
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score

from sap_viz.data.check_set import load_check_set
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.taxonomy import POLICY_CATEGORIES
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.model.loading import load_model


def main() -> None:
    lm = load_model("default")
    df = build_dataset(DataConfig())
    check = load_check_set()
    check_unsafe = check[check["label"] == "unsafe"]
    out = []
    for position in ("last", "last+mean"):
        fcfg = FeatureConfig(layer=22, position=position)
        parts = {s: df[(df["split"] == s)] for s in ("train", "val")}
        X = {s: extract_features(lm, p["text"].tolist(), fcfg).float().numpy() for s, p in parts.items()}
        Xc = extract_features(lm, check["text"].tolist(), fcfg).float().numpy()[(check["label"] == "unsafe").to_numpy()]
        mu, sd = X["train"].mean(0), X["train"].std(0) + 1e-6
        keep = {s: ((p["label"] == "unsafe") & p["category"].isin(POLICY_CATEGORIES)).to_numpy() for s, p in parts.items()}
        clf = LogisticRegression(C=0.05, max_iter=3000).fit((X["train"][keep["train"]] - mu) / sd,
                                                             parts["train"]["category"][keep["train"]])
        for name, x, y in (("validation", X["val"][keep["val"]], parts["val"]["category"][keep["val"]]),
                           ("check set", Xc, check_unsafe["category"])):
            pred = clf.predict((x - mu) / sd)
            acc = float((pred == y.to_numpy()).mean())
            out.append({"features": position, "scored on": name, "n": int(len(y)), "accuracy": round(acc, 3),
                        "MI(category; prediction) bits": round(mutual_info_score(y, pred) / np.log(2), 3)})
    for row in out:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
