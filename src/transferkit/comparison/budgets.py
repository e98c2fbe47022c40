"""Label budgets: parsing ``--budgets 8,32,all`` and drawing nested, stratified training subsets.

A budget counts labelled examples per class (classification, drawn stratified) or sentences / examples
(tasks without a class per example). For one seed, every class's examples are put in one random order and a
budget takes its first ``b``: the 8-per-class draw is inside the 32-per-class draw of the same seed, so a
curve over budgets measures more labels, not other labels.
"""

from __future__ import annotations

import logging

import numpy as np

from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")
ALL = "all"


def parse_budgets(text: str) -> list[int | str]:
    """``"8,32,all"`` -> ``[8, 32, "all"]`` (sorted, "all" last); one-line ConfigError when malformed."""
    out: list[int | str] = []
    for part in [p.strip() for p in str(text).split(",")]:
        if part.lower() == ALL:
            out.append(ALL)
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1 or str(value) != part.lstrip("+"):
            raise ConfigError(
                f"--budgets: {part!r} is not a positive whole number or 'all' (e.g. --budgets 8,32,128,all)"
            )
        out.append(value)
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"--budgets: give distinct budgets, e.g. 8,32,all (got {text!r})")
    return sorted((b for b in out if b != ALL), key=int) + ([ALL] if ALL in out else [])


def cap_budgets(budgets: list, labels: np.ndarray | None, n: int, unit: str) -> tuple[list, dict[str, str]]:
    """Budgets above what the data has, capped to the data (one warning each); returns (budgets, notes)."""
    largest = int(np.unique(labels, return_counts=True)[1].max()) if labels is not None else n
    smallest = int(np.unique(labels, return_counts=True)[1].min()) if labels is not None else n
    kept, notes = [], {}
    for b in budgets:
        if b == ALL or b <= smallest:
            kept.append(b)
            continue
        if b >= largest:
            note = f"budget {b} {unit} is above what the data has (largest: {largest}): it is all the data"
            if ALL not in budgets:
                kept.append(b)
        else:
            kept.append(b)
            note = f"budget {b} {unit} is above the smallest class ({smallest}): that class gives all it has"
        notes[str(b)] = note
        log.warning(note)
    return kept, notes


def draw(
    n: int, labels: np.ndarray | None, budget: int | str, seed: int, cover: list[set] | None = None
) -> np.ndarray:
    """Sorted positions of the ``budget`` draw among ``n`` pool examples (nested across budgets).

    ``labels`` stratifies (``budget`` per class); without them, ``cover`` (the classes each example holds,
    e.g. a sentence's entity types) puts one example of every class at the front of the seed's order, so
    even the smallest budget sees each class.
    """
    if budget == ALL:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        if cover is not None:
            front: list[int] = []
            seen: set = set()
            for i in order:  # greedy, in the seed's order: the first example bringing an unseen class
                if cover[i] - seen:
                    front.append(int(i))
                    seen |= cover[i]
            chosen = set(front)
            order = np.array(front + [int(i) for i in order if int(i) not in chosen], dtype=int)
        return np.sort(order[: int(budget)])
    picked = []
    for cls in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == cls)
        picked.append(members[rng.permutation(len(members))][: int(budget)])
    return np.sort(np.concatenate(picked))
