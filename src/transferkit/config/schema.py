"""The run configuration's schema: one pydantic model per section (data, backbone, task and its per-task
sections, head, strategy, training, evaluation, output, tracking) and :class:`RunConfig`, the whole run.

Every field carries a description that ``transferkit config explain`` prints. Loading, merging and
reporting errors live in :mod:`transferkit.config.loading`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from transferkit.config.section import Section
from transferkit.config.training import TrainingConfig


class DataConfig(Section):
    dataset: str | None = Field(
        None,
        description="Catalog data set name (see `transferkit datasets`); replaces train/validation/test files.",
    )
    train: str | None = Field(
        None,
        description="Training file (CSV, TSV, JSONL or Parquet); image tasks: also an image folder or an .npz file; "
        "token classification: CoNLL or JSONL.",
    )
    validation: str | None = Field(
        None,
        description="Validation file; if absent, data.validation_size of train is split off (seeded; stratified "
        "when each example has one label).",
    )
    test: str | None = Field(
        None,
        description="Test file; if absent, data.test_size of train is split off (seeded; stratified when each "
        "example has one label).",
    )
    text_column: str = Field("text", description="Column holding the input text.")
    label_column: str = Field(
        "label", description="Column holding the label (class name, list of names, or number)."
    )
    validation_size: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Fraction of the whole training file held out for validation when no validation file is given "
        "(ceil(validation_size * n) of n examples, the same for every task).",
    )
    test_size: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Fraction of the whole training file held out for test when no test file is given "
        "(ceil(test_size * n) of n examples, the same for every task).",
    )
    split_seed: int = Field(
        42,
        description="Seed of the train/validation/test split and of the max_*_samples subsamples (the same "
        "draw for every task; stratified by label for single-label classification and images).",
    )
    max_train_samples: int | None = Field(
        None,
        gt=0,
        description="Use at most this many training examples (a seeded subsample, stratified when each "
        "example has one label).",
    )
    max_eval_samples: int | None = Field(
        None,
        gt=0,
        description="Use at most this many validation and test examples each (seeded subsample, like "
        "max_train_samples).",
    )
    label_separator: str = Field(
        "|", min_length=1, description="Separator of labels in one cell for multi-label data ('a|b')."
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.dataset and self.train:
            raise ValueError("give either data.dataset or data.train, not both")
        if self.validation_size + self.test_size >= 1:
            raise ValueError("data.validation_size + data.test_size must be below 1")
        return self


class BackboneConfig(Section):
    name: str = Field(
        "minilm-l6",
        description="Registered backbone (see `transferkit backbones`), a Hugging Face model id or a local folder.",
    )
    pooling: Literal["auto", "mean", "cls"] = Field(
        "auto",
        description="How token features become one vector; 'auto' uses the backbone's own (mean for sentence-transformers).",
    )
    max_length: int = Field(
        256, gt=1, description="Longest tokenised input; longer texts are truncated (with a warning count)."
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="Override the backbone's hidden/attention dropout; None keeps its own."
    )
    pretrained: bool = Field(
        True,
        description="Load the pretrained weights; false builds the same architecture with random weights "
        "(the 'scratch' baseline of `transferkit compare`).",
    )


class TaskConfig(Section):
    type: Literal["text-classification", "token-classification", "image-classification", "generation"] = (
        Field(
            "text-classification",
            description="The task: text-classification, token-classification (NER), image-classification or generation.",
        )
    )
    problem: Literal["single_label", "multi_label", "regression"] = Field(
        "single_label",
        description="single_label (softmax), multi_label (sigmoid per label) or regression (one number).",
    )


class TokenTaskConfig(Section):
    """Settings of token classification (NER); read only when task.type is token-classification."""

    tokens_column: str = Field(
        "tokens", description="JSONL/Parquet/DataFrame column holding each sentence's list of words."
    )
    tags_column: str = Field(
        "tags", description="JSONL/Parquet/DataFrame column holding each sentence's list of tags."
    )
    tag_column: int = Field(
        -1,
        description="CoNLL files: 0-based column of the tag on each line (-1: the last); the word is column 0.",
    )
    file_format: Literal["auto", "conll", "jsonl"] = Field(
        "auto",
        description="How to read data files: auto (.jsonl/.json/.parquet as tables, anything else as CoNLL), conll or jsonl.",
    )
    scheme: Literal["iob1", "iob2", "bioes"] = Field(
        "iob2", description="Tagging scheme of the data: iob1, iob2 (BIO) or bioes."
    )
    target_scheme: Literal["iob1", "iob2", "bioes"] = Field(
        "iob2",
        description="Scheme the model learns and predicts (data is converted); metrics use it (strict mode).",
    )
    stride: int = Field(
        32,
        ge=0,
        description="Sentences longer than backbone.max_length are cut into windows overlapping by this many sub-tokens (at most half a window), and merged back per word.",
    )
    label_all_subtokens: bool = Field(
        False,
        description="Train on every sub-token of a word (continuations get the word's I- tag); False: only the first sub-token.",
    )


class ImageTaskConfig(Section):
    """Settings of image classification; read only when task.type is image-classification."""

    image_size: int | None = Field(
        None,
        gt=7,
        description="Resize images to this square size instead of the backbone's own (e.g. 96 for 28-pixel digits; faster).",
    )
    path_column: str = Field(
        "path", description="Column of a CSV data file holding image paths (relative to the CSV)."
    )
    on_bad_image: Literal["skip", "fail"] = Field(
        "fail",
        description="An unreadable or truncated image: 'fail' stops with its path; 'skip' drops it with a warning count.",
    )
    flip: bool = Field(False, description="Augmentation: random horizontal flips while training.")
    random_resized_crop: bool = Field(
        False, description="Augmentation: train on a random crop (area crop_scale..1, aspect 3/4..4/3)."
    )
    crop_scale: float = Field(
        0.5, gt=0, le=1, description="Smallest area fraction a random resized crop keeps."
    )
    color_jitter: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Augmentation: random brightness, contrast and saturation factors in [1-x, 1+x]; 0 disables.",
    )


class GenerationTaskConfig(Section):
    """Settings of text generation (causal LM); read only when task.type is generation."""

    prompt_column: str = Field("prompt", description="JSONL field holding the prompt (the model's input).")
    completion_column: str = Field(
        "completion", description="JSONL field holding the completion the model learns to write."
    )
    messages_column: str = Field(
        "messages",
        description="JSONL field holding a chat (list of {role, content}); rendered with the tokenizer's chat template, the last assistant turn is the completion.",
    )
    chat_template: bool = Field(
        False,
        description="Also render prompt/completion pairs as a user/assistant chat with the tokenizer's chat template (instruct models).",
    )
    prompt_template: str = Field(
        "{text}\nAnswer:",
        description="For catalog (classification) data sets: the prompt made from each text ({text}); the completion is the label.",
    )
    add_eos: bool = Field(
        True, description="End every completion with the end-of-sequence token, so generation learns to stop."
    )
    packing: bool = Field(
        False,
        description="Pack several short examples into each row of backbone.max_length tokens (positions restart per example, so no example attends to another).",
    )
    train_lm_head: bool | None = Field(
        None,
        description="Train the output layer (tied to the input embeddings in most small LMs); None: only when the strategy trains every weight (full, discriminative).",
    )
    max_new_tokens: int = Field(32, gt=0, description="Longest completion generated during evaluation.")
    eval_samples: int = Field(
        64,
        ge=0,
        description="Validation/test examples whose completions are generated (greedy) for exact match and ROUGE-L; 0 skips generation.",
    )
    prefix_cache: bool = Field(
        True,
        description="Run a prefix of 16+ tokens that the prompts of a generation call share (a chat template's system prompt, a fixed instruction) once and reuse its KV cache; false runs every prompt in full.",
    )


class HeadConfig(Section):
    kind: Literal["linear", "mlp"] = Field(
        "linear", description="Linear head, or an MLP with one hidden layer."
    )
    hidden_size: int = Field(256, gt=0, description="Hidden width of the MLP head.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the head's layers.")


class StrategyConfig(BaseModel):
    """The strategy's name plus its own settings (validated against the strategy's settings model)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = Field(
        "auto",
        description="Transfer strategy (see `transferkit strategies`); 'auto' chooses one from the task, labels "
        "per class, input size, backbone size, hardware and training.time_budget, and records why. Its own "
        "settings sit beside the name.",
    )


class EvaluationConfig(Section):
    pretrained_baseline: bool = Field(
        True,
        description="Also fit a linear probe on frozen pretrained features and record it, to show what fine-tuning added.",
    )
    keep_better: bool = Field(
        True,
        description="When the fine-tuned model scores below the pretrained baseline on validation, save the "
        "baseline (pretrained trunk + linear probe; for generation the pretrained LM) as the run's model, so "
        "predict and serve never get the worse one. Either way metrics.json records a warning.",
    )


class OutputConfig(Section):
    dir: str | None = Field(
        None, description="Run folder; must not exist yet. None: runs/<data>-<strategy>-<time>."
    )
    save_model: bool = Field(True, description="Save the model in Hugging Face format under RUN/model.")
    tensorboard: bool = Field(True, description="Write TensorBoard event files under RUN/logs.")


class TrackingConfig(Section):
    """Experiment tracking beyond the run folder (TensorBoard under output.tensorboard stays the default)."""

    mlflow: str | None = Field(
        None,
        description="MLflow tracking URI (e.g. sqlite:///mlruns.db or http://host:5000); each finished fit becomes "
        "one MLflow run: the resolved config as params, the step and evaluation history and the final metrics, "
        "task/strategy/backbone tags, the plots, model card, metrics.json and config.yaml as artifacts. None: off. "
        "A tracking failure is one warning; the run itself never fails because of it.",
    )
    experiment: str = Field(
        "transferkit", min_length=1, description="MLflow experiment the run is logged in."
    )
    run_name: str | None = Field(None, description="MLflow run name; None: the run folder's name.")
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Extra MLflow tags (e.g. budget, seed), besides task/strategy/backbone.",
    )
    parent_run_id: str | None = Field(
        None,
        description="Log the run as a child of this MLflow run (set by `transferkit compare`, one child per cell).",
    )

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_values_as_text(cls, tags):
        # `tracking.tags.seed=42` parses to an int; MLflow tags are text
        if isinstance(tags, dict):
            return {k: v if isinstance(v, str | dict | list) else str(v) for k, v in tags.items()}
        return tags


class RunConfig(Section):
    """A whole run. Load with :func:`load_config`."""

    data: DataConfig = Field(default_factory=DataConfig, description="Where the examples come from.")
    backbone: BackboneConfig = Field(default_factory=BackboneConfig, description="The pretrained model.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="What is predicted.")
    tokens: TokenTaskConfig = Field(
        default_factory=TokenTaskConfig, description="Token classification (NER) settings."
    )
    image: ImageTaskConfig = Field(
        default_factory=ImageTaskConfig, description="Image classification settings."
    )
    generation: GenerationTaskConfig = Field(
        default_factory=GenerationTaskConfig, description="Text generation (causal LM) settings."
    )
    head: HeadConfig = Field(default_factory=HeadConfig, description="The task head on top of the backbone.")
    strategy: StrategyConfig = Field(
        default_factory=StrategyConfig, description="Which weights train, and how."
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="The optimisation loop.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="What is measured.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where results go.")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="Experiment tracking (MLflow)."
    )

    @model_validator(mode="after")
    def _has_data(self) -> RunConfig:
        if not self.data.dataset and not self.data.train:
            raise ValueError("no data: set data.dataset (e.g. rotten_tomatoes) or data.train (a file)")
        return self
