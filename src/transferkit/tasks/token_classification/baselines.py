"""NER's classical baseline for ``transferkit compare``: every word gets its most frequent training tag
(O when unseen); entity F1 (seqeval, strict IOB2) like the runs."""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from transferkit.evaluation.ner import entity_metrics


def most_frequent_tag(frames: dict[str, pd.DataFrame]) -> dict:

    seen: dict[str, Counter] = defaultdict(Counter)
    for tokens, tags in zip(frames["train"]["tokens"], frames["train"]["tags"], strict=True):
        for word, tag in zip(tokens, tags, strict=True):
            seen[word][tag] += 1

    def predict(split: str) -> tuple[list, list]:
        f = frames[split]
        pred = [[seen[w].most_common(1)[0][0] if w in seen else "O" for w in toks] for toks in f["tokens"]]
        return [list(t) for t in f["tags"]], pred

    out = {}
    for split in ("validation", "test"):
        truth, pred = predict(split)
        out[split] = entity_metrics(truth, pred, "iob2")
    truth, pred = predict("test")
    return {
        "validation": out["validation"]["f1"],
        "test": out["test"]["f1"],
        "test_metrics": {k: v for k, v in out["test"].items() if not isinstance(v, dict | list)},
        "predictions": {"y_true": truth, "y_pred": pred},
    }
