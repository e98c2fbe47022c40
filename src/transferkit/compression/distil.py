"""Knowledge distillation of a run into a smaller student (Hinton et al., 2015).

The student (any backbone ``fit`` accepts, optionally cut to fewer layers) learns from the teacher's soft
labels on the run's training texts, mixed with the true labels:

    target = (1 - alpha) * softmax(teacher_logits / T) + alpha * one_hot(label)
    loss   = cross_entropy(student_logits / T, target)

Cross-entropy against a probability target equals the KL divergence to it up to a constant, so the
training loop of ``fit`` runs unchanged with soft targets (:func:`~transferkit.compression.finetune.finetune`).
Multi-label runs use sigmoid soft labels and regression runs the teacher's values (no temperature).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from transformers import AutoTokenizer

from transferkit import artifacts, hardware
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import _blocks
from transferkit.compression.finetune import finetune, model_logits
from transferkit.config import RunConfig, StrategyConfig
from transferkit.data import DatasetSplits
from transferkit.data.targets import encode_targets
from transferkit.errors import ConfigError
from transferkit.evaluation.scoring import score
from transferkit.strategies import STRATEGIES, count_parameters
from transferkit.tasks.text_classification.fit import write_outputs
from transferkit.tasks.text_classification.model import build_model
from transferkit.tasks.text_classification.predictor import Predictor


def soft_targets(
    teacher_logits: torch.Tensor, hard: np.ndarray, problem: str, temperature: float, alpha: float
) -> np.ndarray:
    """Training targets mixing the teacher's soft labels with the true ones.

    Args:
        teacher_logits: (N, C) teacher outputs.
        hard: (N,) class ids, (N, C) multi-hot rows or (N,) values.
        problem: "single_label", "multi_label" or "regression".
        temperature: Softens the teacher's distribution (single-label only).
        alpha: Weight of the true labels, in [0, 1].

    Returns:
        float32 targets: (N, C) rows (classification) or (N,) values (regression).
    """
    t = teacher_logits.float()
    if problem == "single_label":
        soft = F.softmax(t / temperature, dim=-1).numpy()
        onehot = np.eye(t.shape[1], dtype=np.float32)[np.asarray(hard, dtype=int)]
        return ((1 - alpha) * soft + alpha * onehot).astype(np.float32)
    if problem == "multi_label":
        return ((1 - alpha) * torch.sigmoid(t).numpy() + alpha * hard).astype(np.float32)
    return ((1 - alpha) * t.squeeze(-1).numpy() + alpha * hard).astype(np.float32)


def keep_layers(model: torch.nn.Module, layers: int) -> None:
    """Cuts the student's block stack to ``layers`` blocks, evenly spaced bottom to top (DistilBERT-style
    initialisation from the kept blocks), and records the new depth in its config."""

    blocks = _blocks(model.backbone)
    if not 1 <= layers <= len(blocks):
        raise ConfigError(f"--student-layers must be between 1 and {len(blocks)}, not {layers}")
    keep = np.linspace(0, len(blocks) - 1, layers).round().astype(int).tolist()  # e.g. 6 -> 3: [0, 2, 5]
    kept = [blocks[i] for i in keep]
    for i in range(len(blocks) - 1, -1, -1):
        del blocks[i]
    blocks.extend(kept)
    model.backbone.config.num_hidden_layers = layers
    model.config.backbone = {**model.config.backbone, "num_hidden_layers": layers}


def distil_run(
    teacher_dir: Path,
    folder: Path,
    student: str,
    splits: DatasetSplits,
    cfg: RunConfig,
    epochs: float = 2.0,
    temperature: float = 2.0,
    alpha: float = 0.5,
    student_layers: int | None = None,
) -> dict:
    """Trains a student on the teacher's soft labels and writes it as a new run folder ``folder``.

    Args:
        teacher_dir: The teacher run folder (PyTorch).
        folder: The student run folder to create.
        student: Student backbone: a registered name, a Hugging Face folder or id.
        splits: The teacher's data (train for distillation, validation to keep the best state, test to score).
        cfg: The teacher's run configuration (training settings are reused).
        epochs / temperature / alpha: Distillation settings (see the module docstring).
        student_layers: Keep only this many of the student's blocks.

    Returns:
        The student's ``metrics.json``.
    """

    problem, labels = cfg.task.problem, splits.labels
    teacher = Predictor(teacher_dir)
    train_texts = splits.train["text"].tolist()
    hard = {n: encode_targets(getattr(splits, n), problem, labels) for n in artifacts.SPLITS}
    targets = soft_targets(teacher.logits(train_texts), hard["train"], problem, temperature, alpha)

    student_cfg = cfg.model_copy(deep=True)
    student_cfg.backbone.name = student
    student_cfg.strategy = StrategyConfig(name="full")
    student_cfg.training.epochs = epochs
    student_cfg.output.dir = str(folder)
    spec = resolve_backbone(student_cfg.backbone)
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    model = build_model(spec, student_cfg, labels)
    if student_layers is not None:
        keep_layers(model, student_layers)
    temp = temperature if problem == "single_label" else 1.0
    artifacts.create_run_dir(folder)
    artifacts.save_config(student_cfg, folder)
    result = finetune(
        model, tokenizer, student_cfg, train_texts, targets, splits.validation["text"].tolist(),
        hard["validation"], labels, epochs, log_dir=folder / "logs",
        forward=lambda m, b: m(**b).logits / temp,  # (B, C) softened like the teacher's targets
    )  # fmt: skip
    metrics: dict = {}
    precision = hardware.resolve_precision(student_cfg.training.precision)  # what the loop trained at
    for split in ("test", "validation"):
        logits = model_logits(
            model, tokenizer, getattr(splits, split)["text"].tolist(), cfg.backbone.max_length,
            precision=precision,
        )  # fmt: skip
        metrics[split] = score(logits, hard[split], problem, labels)
    trainable, total = count_parameters(model)
    metrics.update(
        trainable_parameters=trainable, total_parameters=total, strategy="distillation", backbone=spec.name,
        task=cfg.task.type, problem=problem,
        distillation={"teacher": str(teacher_dir), "teacher_parameters": teacher.metrics.get("total_parameters"),
                      "student_layers": student_layers, "temperature": temperature, "alpha": alpha, "epochs": epochs},
        training={"steps": result.steps, "train_seconds": round(result.train_seconds, 3),
                  "precision": precision.record()},
    )  # fmt: skip
    plan = STRATEGIES.get("full").apply(model, STRATEGIES.get("full").settings(), student_cfg.training)
    write_outputs(
        folder,
        student_cfg,
        model,
        plan,
        False,
        tokenizer,
        metrics,
        result.history,
        splits,
        spec,
        trainable,
        total,
    )
    return metrics
