"""The ``training`` section of the run configuration: length (the data-derived schedule or epochs / steps),
batches, optimizer, evaluation and early stopping, checkpoints, precision and the CPU kernels' switches."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from transferkit.config.section import Section


class TrainingConfig(Section):
    epochs: float | None = Field(
        None,
        gt=0,
        description="Training epochs (fractions allowed). None: derived from the data: 3 epochs, but at least "
        "min_steps optimizer steps and at most max_epochs epochs (heads on cached features: 5x min_steps, "
        "10x max_epochs), 5 to 20 evaluations, early stopping after 5 without improvement, best weights restored.",
    )
    max_steps: int | None = Field(
        None, gt=0, description="Stop after this many optimizer steps (overrides epochs and the rule)."
    )
    min_steps: int = Field(
        200,
        gt=0,
        description="Data-derived schedule (epochs and max_steps unset): train at least this many optimizer steps.",
    )
    max_epochs: float = Field(
        20, gt=0, description="Data-derived schedule: train at most this many epochs (tiny sets)."
    )
    feature_store: str | None = Field(
        None,
        description="Folder of frozen-trunk features shared by runs on the same backbone settings: inputs seen "
        "by an earlier run are read back instead of recomputed (`transferkit compare` sets it).",
    )
    time_budget: float | None = Field(
        None,
        gt=0,
        description="Seconds the whole fit may take; strategy auto picks the best strategy expected to fit in it.",
    )
    batch_size: int | None = Field(
        None,
        gt=0,
        description="Training batch size per process. None: 32; with the data-derived schedule (epochs and max_steps unset) n // 4 (at least 8) on sets under 128 examples.",
    )
    eval_batch_size: int = Field(128, gt=0, description="Batch size for evaluation and prediction.")
    eval_max_tokens: int | None = Field(
        # measured on a 2-core Xeon (MiniLM eval forward, bf16): 3-4k tokens per batch ran 16-25% faster than
        # 8k (1,079 vs 977 examples/s at 24 tokens, 209 vs 169 at 128 tokens); fp32 is flat between 4k and 8k
        4096,
        gt=0,
        description="Cap on an evaluation batch's rows x longest example (tokens), so batches of long texts hold fewer rows and memory stays bounded (and activations stay cache- and allocator-friendly); null: always eval_batch_size rows. One process only.",
    )
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of the trunk.")
    head_learning_rate: float | None = Field(
        None,
        gt=0,
        description="Learning rate of the head; None: 1e-3 when the trunk is frozen, else learning_rate x 10.",
    )
    weight_decay: float = Field(
        0.01, ge=0, description="AdamW weight decay (never applied to biases and LayerNorm weights)."
    )
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Fraction of steps with linear warmup.")
    scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Decay after warmup.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm; None disables.")
    fast_dropout: bool = Field(
        True,
        description="While training, dropout layers draw their masks 16 random bits per element from torch's "
        "generator (the same distribution, p rounded to 1/65536; ~10% of a MiniLM full step faster on CPU than "
        "PyTorch's bernoulli draw). Seeded runs repeat exactly; the random stream differs from PyTorch's. "
        "false: PyTorch's dropout.",
    )
    row_embedding_grads: bool = Field(
        True,
        description="Trainable word embeddings get gradients only for the batch's rows, into one buffer kept "
        "across steps (the same values as PyTorch's dense gradient, without allocating and zero-filling a "
        "vocabulary x width tensor every step; ~20% of a MiniLM full step). false: PyTorch's dense gradient.",
    )
    batch_norm: Literal["auto", "frozen", "train", "recalibrate"] = Field(
        "auto",
        description="BatchNorm layers while training (image trunks; text trunks have none). 'frozen': inference "
        "mode, running statistics kept (affine weights still train); 'train': PyTorch's own; 'recalibrate': "
        "trained, and the running statistics recomputed over the training set before each evaluation; 'auto': "
        "frozen for a pretrained trunk, recalibrate for backbone.pretrained=false (EfficientNet full at 8 "
        "images per class: validation macro-F1 0.185 training them, 0.854 frozen).",
    )
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    seed: int = Field(42, description="Seed for weights, dropout and data order: same seed, same result.")
    group_by_length: bool = Field(
        True, description="Batch texts of similar length together (dynamic padding wastes less)."
    )
    class_weights: Literal["none", "auto"] = Field(
        "none", description="'auto' weights the loss by inverse class frequency (imbalanced data)."
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=0,
        description="Stop after this many evaluations without improvement. None: 5 with the data-derived "
        "schedule, never when epochs or max_steps are given; 0: never.",
    )
    min_delta: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="A probe-initialised run (head, lp-ft, gradual) leaves its start (the pretrained baseline) "
        "only for an evaluation better by more than this, and the guard keeps the baseline unless the "
        "fine-tuned model beats it by more than this. 'auto': two validation examples' worth (2 / validation "
        "examples) for metrics where higher is better (accuracy, F1, exact match), 0 for losses and "
        "perplexity; 0: any improvement.",
    )
    metric_for_best: str | None = Field(
        None,
        description="Validation metric that picks the best checkpoint; None: f1_macro (classification) or rmse (regression).",
    )
    evaluations_per_epoch: int = Field(1, gt=0, description="Validation passes per epoch.")
    sampling: Literal["random", "balanced"] = Field(
        "random", description="'balanced' draws every class equally often each epoch (with replacement)."
    )
    loss: Literal["cross_entropy", "focal"] = Field(
        "cross_entropy",
        description="Classification loss; 'focal' down-weights easy examples (imbalanced data).",
    )
    focal_gamma: float = Field(2.0, ge=0, description="Focusing parameter of the focal loss.")
    checkpoint_every_steps: int | None = Field(
        None,
        gt=0,
        description="Also checkpoint every this many optimizer steps (a checkpoint is always written at each evaluation).",
    )
    keep_checkpoints: int = Field(
        2, gt=0, description="How many of the newest checkpoints to keep (for `fit --resume RUN`)."
    )
    log_every_steps: int = Field(
        10, gt=0, description="Write step metrics (loss, lr) every this many optimizer steps."
    )
    num_threads: int | None = Field(
        None, gt=0, description="CPU threads for torch; None keeps torch's default."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description=(
            "Numeric precision of training, evaluation, the baseline and feature passes (Accelerate's mixed "
            "precision: autocast, fp32 master weights and optimizer state; cached features stay fp32). auto: "
            "bf16 where the CPU has AMX-BF16 / AVX512-BF16 or the CUDA device supports bf16, fp16 with loss "
            "scaling on older CUDA devices, fp32 otherwise. `transferkit env` shows what auto picks here."
        ),
    )
