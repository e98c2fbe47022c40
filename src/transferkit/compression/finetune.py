"""Short fine-tunes for compression (pruning recovery, distillation), on the training loop of ``fit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from transferkit.config import RunConfig
from transferkit.data.text import Collator
from transferkit.evaluation import primary_metric
from transferkit.evaluation.scoring import score
from transferkit.inference import forward_in_order
from transferkit.strategies import STRATEGIES
from transferkit.tasks.text_classification.data import TokenizedDataset
from transferkit.training.loop import Forward, TrainResult, train_loop


def _plain_forward(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return m(**batch).logits  # (B, C)


def finetune(
    model: torch.nn.Module,
    tokenizer,
    cfg: RunConfig,
    train_texts: list[str],
    train_targets: np.ndarray,
    val_texts: list[str],
    val_targets: np.ndarray,
    labels: list[str],
    epochs: float,
    log_dir: Path | None = None,
    forward: Forward = _plain_forward,
) -> TrainResult:
    """Trains every weight of ``model`` for ``epochs`` with the run's training settings (strategy ``full``).

    Args:
        model: A ``TransferkitForSequenceClassification`` (pruning masks, if any, stay applied).
        tokenizer: Its tokenizer.
        cfg: The run configuration (batch size, learning rate, seed, max_length, problem).
        train_texts / train_targets: Training examples; targets may be soft (float (N, C) rows), as
            distillation gives them: cross-entropy takes probability targets.
        val_texts / val_targets: Validation examples with hard targets (picks the best state).
        labels: Class names in head order.
        epochs: Passes over the training examples.
        log_dir: Where ``train_log.jsonl`` goes (None: nowhere).
        forward: ``forward(model, batch) -> (B, C) logits`` used for the loss (e.g. divided by a temperature).

    Returns:
        The loop's result; ``model`` holds the best validation state.
    """
    problem = cfg.task.problem
    training = cfg.training.model_copy(
        update={"epochs": epochs, "max_steps": None, "loss": "cross_entropy", "class_weights": "none",
                "sampling": "random", "progress": False}
    )  # fmt: skip
    soft = train_targets.dtype.kind == "f"
    train_set = TokenizedDataset(tokenizer, train_texts, train_targets, cfg.backbone.max_length)
    val_set = TokenizedDataset(tokenizer, val_texts, val_targets, cfg.backbone.max_length)
    collator = Collator(tokenizer, torch.float32 if soft or problem != "single_label" else torch.long)
    full = STRATEGIES.get("full")
    plan = full.apply(model, full.settings(), training)

    def evaluate(logits: torch.Tensor) -> dict:
        return score(logits, val_targets, problem, labels)

    return train_loop(
        model, forward, plan, train_set, val_set, collator, evaluate, training, problem,
        cfg.training.metric_for_best or primary_metric(problem)[0], log_dir=log_dir, checkpoint_dir=None,
        tensorboard=False,
    )  # fmt: skip


def model_logits(
    model: torch.nn.Module, tokenizer, texts: list[str], max_length: int, batch_size: int = 64, precision=None
):
    """(N, C) logits of a PyTorch model on texts, in input order (autocast at ``precision``; None: fp32)."""
    model.eval()
    ds = TokenizedDataset(tokenizer, texts, None, max_length)
    return forward_in_order(
        lambda b: model(**b).logits, ds, Collator(tokenizer), batch_size, precision=precision
    )
