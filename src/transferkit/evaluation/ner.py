"""Entity-level metrics for token classification, with seqeval's semantics.

An entity counts as found only if its type and its exact word span match. With ``strict=True`` the
tagging scheme's rules decide where entities begin and end (seqeval's strict mode: for IOB2 an ``I-X``
that follows ``O`` starts no entity); otherwise seqeval's lenient CoNLL rules apply.
"""

from __future__ import annotations

import math
import warnings

SEQEVAL_SCHEMES = {"iob1": "IOB1", "iob2": "IOB2", "bioes": "IOBES"}


def _round(x) -> float:
    x = float(x)
    return 0.0 if math.isnan(x) else x


def entity_metrics(
    true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str = "iob2", strict: bool = True
) -> dict:
    """Entity precision / recall / F1 (micro over entities, and macro over types), per type, plus a
    token-level report.

    Args:
        true_tags / pred_tags: Per sentence, one tag per word (same lengths).
        scheme: "iob1", "iob2" or "bioes" (both sequences use it).
        strict: seqeval's strict mode for the scheme.

    Returns:
        ``f1``, ``precision``, ``recall`` (micro), ``f1_macro``, ``precision_macro``, ``recall_macro``,
        ``per_type`` ({type: {precision, recall, f1, support}}), ``accuracy`` (per word),
        ``token_report`` ({tag: {precision, recall, f1, support}}), ``num_sentences``, ``num_tokens``,
        ``num_entities``.
    """
    # seqeval load on first use, not when ner is imported
    import seqeval.scheme

    # sklearn, scipy, pandas ... load on first use, not when ner is imported
    from seqeval.metrics import accuracy_score, classification_report

    # sklearn, scipy, pandas ... load on first use, not when ner is imported
    from sklearn.metrics import precision_recall_fscore_support

    if len(true_tags) != len(pred_tags) or any(
        len(t) != len(p) for t, p in zip(true_tags, pred_tags, strict=True)
    ):
        raise ValueError("true and predicted tags differ in number of sentences or words")
    kwargs = {"mode": "strict", "scheme": getattr(seqeval.scheme, SEQEVAL_SCHEMES[scheme])} if strict else {}
    with warnings.catch_warnings():  # no entities at all: numpy warns about empty means; the scores are 0
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0, **kwargs)
    per_type = {
        name: {
            "precision": _round(r["precision"]),
            "recall": _round(r["recall"]),
            "f1": _round(r["f1-score"]),
            "support": int(r["support"]),
        }
        for name, r in report.items()
        if not name.endswith(" avg")
    }
    micro, macro = report.get("micro avg", {}), report.get("macro avg", {})
    flat_true = [t for s in true_tags for t in s]
    flat_pred = [t for s in pred_tags for t in s]
    tags = sorted(set(flat_true) | set(flat_pred))
    p, r, f, s = precision_recall_fscore_support(flat_true, flat_pred, labels=tags, zero_division=0)
    token_report = {
        tag: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, tag in enumerate(tags)
    }
    return {
        "f1": _round(micro.get("f1-score", 0.0)),
        "precision": _round(micro.get("precision", 0.0)),
        "recall": _round(micro.get("recall", 0.0)),
        "f1_macro": _round(macro.get("f1-score", 0.0)),
        "precision_macro": _round(macro.get("precision", 0.0)),
        "recall_macro": _round(macro.get("recall", 0.0)),
        "accuracy": float(accuracy_score(true_tags, pred_tags)) if flat_true else 0.0,
        "per_type": per_type,
        "token_report": token_report,
        "num_sentences": len(true_tags),
        "num_tokens": len(flat_true),
        "num_entities": sum(v["support"] for v in per_type.values()),
    }
