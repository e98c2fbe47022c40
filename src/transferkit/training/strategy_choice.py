"""Strategy ``auto``'s decision table: the strategy chosen from what is known before training (the default when none is given).

Inputs (:class:`Facts`): the task, labelled examples per class, input length, the backbone's size, the
hardware (device, threads, the measured time of one forward pass on a few training examples) and
``training.time_budget``. The decision is the table in :func:`choose`, one row per rule, top to bottom, each
threshold justified by a figure measured on the shipped data (``benchmarks/bench_defaults.py``, figures in the
README). The choice and its reason are printed at the start and recorded in ``metrics.json`` (``auto``).

Why these rows (MiniLM-L6, rotten_tomatoes / vader_tweets at 8 / 32 / 128 labelled examples per class, 256
validation rows, test macro-F1; 2-core Xeon, 2026-12-02, ``benchmarks/bench_defaults.py``, README table):

* Classification with a linear head gets ``lp-ft`` at every label budget: it starts from the converged probe
  and evaluates that start first, so it never ends below the baseline on validation. At 8 per class it was
  the best strategy of the cell (vader_tweets: 0.717 vs the probe's 0.621, full's 0.591, below its baseline
  on test; rotten_tomatoes: every strategy stayed at the probe's 0.558, full and lora through the guard);
  at 128 per class it was within a point of the best (rotten_tomatoes: 0.750 vs lora 0.758, full 0.755).
  It was 2.5 points behind ``full`` at 32 per class on rotten_tomatoes (0.676 vs 0.701), the cost of a
  choice that never needs the guard. An earlier draft picked the linear probe below ``FEW_SHOT`` per class;
  the vader_tweets cell refuted it.
* Images with a linear head get ``full`` from ``FEW_SHOT`` labelled images per class up, ``lp-ft`` below
  (mnist5k, EfficientNet-Lite0 at 96 px, BatchNorm frozen, test macro-F1; 2-core AMD EPYC, 2026-12-04): at 8
  per class lp-ft 0.851, full 0.831; at 32 full 0.936, lp-ft 0.920, lora 0.924; at 128 lp-ft 0.960, full
  0.956. At equal time (115-117 s at 32 and 128 per class), full is the best or within half a point from 32
  per class; below, fine-tuning a freshly initialised head with the trunk loses 2 points to starting from
  the probe.
* An MLP head (``head.kind=mlp``, which the probe cannot initialise) gets ``head`` below ``FEW_SHOT``
  examples per class (a frozen trunk: few examples cannot move 22M weights well) and ``full`` above.
* Trunks over ``LARGE_TRUNK`` non-embedding parameters get LoRA: the adapters' optimizer state is ~1% of the
  weights (peak memory below full's on MiniLM already, README), which is what lets big backbones fit.
* When the estimated time of the chosen plan exceeds the budget (``training.time_budget``; on a machine
  without an accelerator, ``CPU_BUDGET`` seconds), the next cheaper plan that fits is taken: ``top-k`` (the
  frozen bottom cached, only the top 2 groups train), then ``linear-probe`` (one forward pass per example).
* Generation always gets ``lora``: the probe-based strategies do not apply to a pretrained LM head, and on
  few dozen pairs LoRA learned its completions (exact match) without touching the trunk.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from transferkit.config import RunConfig, StrategyConfig, TrainingConfig
from transferkit.training.schedule import batch_size_for, plan_schedule
from transferkit.utils.io import atomic_write_json

log = logging.getLogger("transferkit")

FEW_SHOT = 16  # labelled examples per class below which an MLP head trains on a frozen trunk, and images get lp-ft (docstring)
LARGE_TRUNK = 300_000_000  # non-embedding parameters above which LoRA is chosen (memory)
CPU_BUDGET = 1800.0  # seconds a fit may take on a machine without an accelerator when no budget is given
TRAIN_COST = 3.0  # a training step costs ~3 forward passes (forward + backward with weight gradients)
TOP_K_FRACTION = 2 / 7  # top-k's default k=2 of MiniLM's 7 groups: the share of the trunk that runs per step
AUTO_FILE = "auto.json"  # the decision, kept in the run folder so a resumed run reports it too


@dataclass
class Facts:
    """What ``auto`` decides from. ``per_class`` is None for regression (no classes)."""

    task: str
    problem: str
    num_train: int
    per_class: int | None
    input_length: float  # mean tokens per example (text, tokens, generation) or pixels per side (images)
    trunk_parameters: int  # non-embedding parameters of the backbone (what costs FLOPs)
    head_kind: str
    device: str
    threads: int
    forward_seconds: float  # measured seconds of one forward pass per training example
    num_eval: int  # validation + test examples (passes over them: features and final scores)
    time_budget: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Choice:
    """The decision: a strategy name, the rule that chose it, and the estimated seconds of each plan."""

    name: str
    reason: str
    estimates: dict[str, float]
    facts: dict

    def to_dict(self) -> dict:
        return {
            "choice": self.name,
            "reason": self.reason,
            "estimated_seconds": self.estimates,
            "facts": self.facts,
        }


def estimate_seconds(facts: Facts, training: TrainingConfig) -> dict[str, float]:
    """Seconds each plan is expected to take: forward passes for features, training steps at ~3 forwards each."""
    fwd = facts.forward_seconds
    feature_pass = (facts.num_train + facts.num_eval) * fwd
    batch = batch_size_for(training, facts.num_train)
    validation = max(1, facts.num_eval // 2)  # validation and test: about half each
    sched = plan_schedule(
        training, facts.num_train, math.ceil(facts.num_train / batch), num_validation=validation
    )
    steps = sched.total_steps
    train = steps * batch * TRAIN_COST * fwd
    eval_passes = math.ceil(steps / sched.eval_every) * validation * fwd
    full = train + eval_passes + facts.num_eval * fwd
    return {
        "linear-probe": round(feature_pass, 1),
        "top-k": round(feature_pass * 2 + train * TOP_K_FRACTION + eval_passes * TOP_K_FRACTION, 1),
        "lp-ft": round(feature_pass + full, 1),
        "full": round(feature_pass + full, 1),
        "lora": round(feature_pass + full, 1),
    }


def choose(facts: Facts, training: TrainingConfig) -> Choice:
    """The decision table (see the module docstring for the measured figure behind each threshold)."""
    est = estimate_seconds(facts, training)
    budget = facts.time_budget or (CPU_BUDGET if facts.device == "cpu" else None)
    budget_src = "training.time_budget" if facts.time_budget else f"the {CPU_BUDGET:.0f} s CPU default"
    d = asdict(facts)

    def pick(name: str, why: str) -> Choice:
        return Choice(name, why, est, d)

    if facts.task == "generation":
        return pick(
            "lora", "generation: LoRA adapts a pretrained LM on few examples without touching the trunk"
        )
    if facts.per_class is not None and facts.per_class < FEW_SHOT and facts.head_kind != "linear":
        return pick("head", f"{facts.per_class} labelled examples in the rarest class (< {FEW_SHOT}) and head.kind=mlp: a frozen trunk, the head trains on cached features")  # fmt: skip
    size = f"{facts.trunk_parameters / 1e6:.3g}M-parameter trunk"
    if facts.trunk_parameters > LARGE_TRUNK:
        first = "lora"
        why = f"{size} (> {LARGE_TRUNK / 1e6:.0f}M): LoRA keeps optimizer state and memory small"
    elif facts.head_kind != "linear":
        first, why = "full", f"{size}; head.kind=mlp (lp-ft needs a linear head): full fine-tuning"
    else:
        many = (
            f"{facts.per_class} per class" if facts.per_class is not None else f"{facts.num_train} examples"
        )
        first = "lp-ft"
        why = f"{many}, {size}: fine-tune from the converged linear probe (never below it on validation)"
        if (
            facts.task == "image-classification"
            and facts.per_class is not None
            and facts.per_class >= FEW_SHOT
        ):
            first = "full"
            why = f"{many} (>= {FEW_SHOT}) of images, {size}: full fine-tuning (BatchNorm frozen) moves a convolutional trunk further than lp-ft"  # fmt: skip
    if budget is None or est[first] <= budget:
        return pick(
            first,
            why + (f"; ~{est[first]:.0f} s expected within {budget_src} ({budget:.0f} s)" if budget else ""),
        )
    for cheaper in ("top-k", "linear-probe"):
        if est[cheaper] <= budget or cheaper == "linear-probe":
            return pick(cheaper, f"{first} would take ~{est[first]:.0f} s, over {budget_src} ({budget:.0f} s): {cheaper} (~{est[cheaper]:.0f} s)")  # fmt: skip
    raise AssertionError("unreachable")


def trunk_parameters(backbone: nn.Module) -> int:
    """Parameters of the backbone outside embedding tables (those cost no matmul FLOPs)."""
    total = sum(p.numel() for p in backbone.parameters())
    emb = sum(
        p.numel()
        for m in backbone.modules()
        if isinstance(m, nn.Embedding)
        for p in m.parameters(recurse=False)
    )
    return total - emb


def _sample_batches(dataset, collator, rows: int = 16, batch: int = 8) -> list[dict]:
    """A few collated batches spread over ``dataset`` (labels dropped) for timing a forward pass."""
    n = len(dataset)
    picks = sorted({round(i * (n - 1) / max(rows - 1, 1)) for i in range(min(rows, n))})
    out = []
    for j in range(0, len(picks), batch):
        b = collator([dataset[i] for i in picks[j : j + batch]])
        b.pop("labels", None)
        b.pop("idx", None)
        out.append(b)
    return out


@torch.inference_mode()
def forward_seconds(model: nn.Module, forward: Callable, dataset, collator) -> float:
    """Measured seconds per example of ``forward(model, batch)``: the fastest of three passes over a few
    batches (a single timed pass once measured 0.1 s per example for MiniLM instead of 0.004 s: the first
    pass over new shapes creates their kernels, and picked top-k over lp-ft on a 1800 s budget)."""
    batches = _sample_batches(dataset, collator)
    if not batches:
        return 0.0
    was_training = model.training
    model.eval()
    n = sum(len(next(iter(b.values()))) for b in batches)
    best = float("inf")
    try:
        for _ in range(
            3
        ):  # the first pass pays one-time costs (kernels for each new shape): the best pass counts
            start = time.perf_counter()
            for b in batches:
                forward(model, b)
            best = min(best, time.perf_counter() - start)
    finally:
        model.train(was_training)
    return best / max(n, 1)


def measure(
    cfg: RunConfig,
    model: nn.Module,
    forward: Callable,
    train_set,
    collator,
    labels: list | None,
    num_eval: int,
    input_length: float | None = None,
) -> Facts:
    """The :class:`Facts` of a run: counts from the data, sizes from the model, one timed forward pass.

    Args:
        cfg: The run's config.
        model: The task model (``model.backbone`` is the trunk).
        forward: ``forward(model, batch)``, as in prediction.
        train_set: The encoded training set (``lengths`` per example, when it has them).
        collator: Its collator.
        labels: Per training example, its label (or list of labels / entity types); None for regression.
        num_eval: Validation + test examples.
        input_length: Mean input length; default: the mean of ``train_set.lengths``.
    """
    lengths = getattr(train_set, "lengths", None)
    if input_length is None:
        input_length = float(sum(lengths) / len(lengths)) if lengths is not None and len(lengths) else 0.0
    device = next(model.parameters()).device.type
    return Facts(
        task=cfg.task.type,
        problem=cfg.task.problem,
        num_train=len(train_set),
        per_class=per_class_count(labels)
        if labels is not None and cfg.task.problem != "regression"
        else None,
        input_length=round(input_length, 1),
        trunk_parameters=trunk_parameters(model.backbone),
        head_kind=cfg.head.kind,
        device=device,
        threads=torch.get_num_threads(),
        forward_seconds=forward_seconds(model, forward, train_set, collator),
        num_eval=num_eval,
        time_budget=cfg.training.time_budget,
    )


def per_class_count(labels: list) -> int | None:
    """Examples of the rarest class (labels: names, or lists of names for multi-label / entity types)."""
    counts: dict = {}
    for lab in labels:
        for name in lab if isinstance(lab, list | tuple | set) else [lab]:
            counts[name] = counts.get(name, 0) + 1
    return min(counts.values()) if counts else None


def resolve(cfg: RunConfig, facts: Callable[[], Facts]) -> tuple[RunConfig, dict | None]:
    """The run's config with ``auto`` replaced by the chosen strategy, and the decision (None if not auto)."""
    if cfg.strategy.name != "auto":
        return cfg, None
    f = facts()
    choice = choose(f, cfg.training)
    log.info("strategy auto -> %s: %s", choice.name, choice.reason)
    return cfg.model_copy(update={"strategy": StrategyConfig(name=choice.name)}), choice.to_dict()


def remember(run_dir: Path, decision: dict | None, main: bool) -> dict | None:
    """Keeps the decision in the run folder (new runs), or reads it back (resumed runs)."""
    path = run_dir / AUTO_FILE
    if decision is not None:
        if main:
            atomic_write_json(path, decision)
        return decision
    return json.loads(path.read_text()) if path.is_file() else None
