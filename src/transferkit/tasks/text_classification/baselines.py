"""Text classification's classical baseline for ``transferkit compare``: TF-IDF (word 1-2 grams) +
logistic regression, trained from scratch on the cell's labelled texts."""

from __future__ import annotations

import pandas as pd

from transferkit.evaluation.baselines import logistic_regression


def tfidf_logistic(frames: dict[str, pd.DataFrame]) -> dict:
    # sklearn, scipy, psutil ... load on first use, not when baselines is imported
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    x = {
        s: (vec.fit_transform if s == "train" else vec.transform)(f["text"].astype(str))
        for s, f in frames.items()
    }
    y = {s: f["label"].astype(str).to_numpy() for s, f in frames.items()}
    return logistic_regression(x, y)
