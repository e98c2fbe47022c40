"""The model card (``RUN/README.md``) of an image classification run."""

from __future__ import annotations

from pathlib import Path

from transferkit.artifacts import training_summary
from transferkit.config import RunConfig
from transferkit.utils.io import atomic_write_text

KEYS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")


def _row(split: str, model: str, block: dict) -> str | None:
    vals = [f"{block[k]:.4f}" for k in KEYS if isinstance(block.get(k), float)]
    return f"| {split} | {model} | " + " | ".join(vals) + " |" if vals else None


def write_image_card(run_dir: Path, cfg: RunConfig, metrics: dict, backbone: str, labels: list[str], source: str, sizes: dict, trainable: int, total: int) -> None:  # fmt: skip
    """Writes ``README.md``: data, strategy, metrics and how to load the model."""
    rows = [
        _row(split, name, block)
        for split in ("validation", "test")
        for name, block in (
            ("fine-tuned", metrics.get(split, {})),
            ("pretrained baseline (linear probe)", metrics.get("pretrained_baseline", {}).get(split, {})),
        )
    ]
    table = "\n".join(["| split | model | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)] + [r for r in rows if r])  # fmt: skip
    stock = (run_dir / "transformers").is_dir()
    plain = (
        f"""
Plain `transformers` (a stock model of the backbone's family with the same weights and image processor):

```python
from transformers import pipeline
clf = pipeline("image-classification", model="{run_dir}/transformers")
clf("image.png")
```
"""
        if stock
        else ""
    )
    text = f"""---
library_name: transformers
pipeline_tag: image-classification
tags: [transferkit, {cfg.strategy.name}]
---
# {run_dir.name}

Fine-tuned with transferkit from `{backbone}`.

- **Task:** image-classification; labels: {", ".join(labels)}
- **Data:** {source}: {sizes["train"]} train / {sizes["validation"]} validation / {sizes["test"]} test images
- **Strategy:** `{cfg.strategy.name}`; trainable parameters {trainable:,} of {total:,}
- **Training:** {training_summary(cfg, metrics)}
- **Input:** image size {cfg.image.image_size or "the backbone's own"}; augmentation: flip {cfg.image.flip}, random resized crop {cfg.image.random_resized_crop}, colour jitter {cfg.image.color_jitter}

## Metrics

{table}

## How to load

```python
import transferkit
model = transferkit.load("{run_dir}")
model.predict(["image.png"])  # paths, PIL images or numpy arrays
```
{plain}"""
    atomic_write_text(run_dir / "README.md", text)
