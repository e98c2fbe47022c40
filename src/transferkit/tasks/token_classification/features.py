"""Token classification's per-token features and scores: the frozen trunk's features of each window, the
labelled sub-tokens a probe is fitted on, and entity metrics of window logits against the sentences' tags."""

from __future__ import annotations

import numpy as np
import torch

from transferkit.evaluation.ner import entity_metrics
from transferkit.evaluation.scoring import PREDICTIONS
from transferkit.inference import ordered_loader
from transferkit.tasks.token_classification.data import IGNORE, TokenWindows, word_logits

PROBE_MAX_TOKENS = 50_000  # labelled tokens the linear probe is fitted on at most (seeded sample)


def continuation_ids(labels: list[str]) -> dict[int, int]:
    """Label id of a word's later sub-tokens when ``label_all_subtokens``: B-X -> I-X, others unchanged."""
    index = {name: i for i, name in enumerate(labels)}
    return {i: index.get("I-" + n[2:], i) for i, n in enumerate(labels) if n.startswith("B-")}


def score_windows(
    windows: TokenWindows, logits: torch.Tensor, true_tags, labels, scheme, predictions: bool = False
) -> dict:
    """Entity metrics (and the loss) of ``(N, T, C)`` window logits against the sentences' word tags."""
    per_word = word_logits(windows, logits)
    pred = [[labels[i] for i in w.argmax(-1).tolist()] for w in per_word]
    truth = [list(t) for t in true_tags]
    out = entity_metrics(truth, pred, scheme)
    if predictions:  # per-sentence tags for the run's test_predictions.json
        out[PREDICTIONS] = {"y_true": truth, "y_pred": pred}
    if windows.labels is not None:
        t = logits.shape[1]
        target = torch.tensor([(lab + [IGNORE] * t)[:t] for lab in windows.labels])  # (N, T)
        out["loss"] = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten()))
    return out


@torch.inference_mode()
def token_features(model, dataset: TokenWindows, collator, batch_size: int) -> list[torch.Tensor]:
    """Per window, ``(T_i, D)`` last-layer features of the frozen trunk (unpadded), in dataset order."""
    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(dataset)
    try:
        for batch in ordered_loader(dataset, collator, batch_size):
            idx = batch.pop("idx")
            batch.pop("labels", None)
            hidden = model.features(**batch)  # (B, T, D)
            lengths = batch["attention_mask"].sum(dim=1)
            for row, i in enumerate(idx.tolist()):
                out[i] = hidden[row, : int(lengths[row])].float().clone()
    finally:
        model.train(was_training)
    return out


def labelled_tokens(features: list[torch.Tensor], labels: list[list[int]], limit: int | None, seed: int):
    """(N, D) features and (N,) ids of every labelled sub-token (at most ``limit``, seeded sample)."""
    x = torch.cat(features).numpy()
    y = np.concatenate([np.asarray(lab[: len(f)]) for f, lab in zip(features, labels, strict=True)])
    keep = np.flatnonzero(y != IGNORE)
    if limit is not None and len(keep) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=limit, replace=False))
    return x[keep], y[keep]


def padded_logits(probe, features: list[torch.Tensor]) -> torch.Tensor:
    """(N, T, C) probe logits of per-window features, zero-padded to the longest window."""
    logits = [probe.logits(f) for f in features]
    longest = max(len(f) for f in logits)
    return torch.stack([torch.nn.functional.pad(f, (0, 0, 0, longest - len(f))) for f in logits])
