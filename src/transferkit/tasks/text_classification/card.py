"""The model card (``RUN/README.md``) of a text-classification run."""

from __future__ import annotations

from pathlib import Path

from transferkit.artifacts import training_summary
from transferkit.config import RunConfig
from transferkit.utils.io import atomic_write_text


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_text_card(run_dir: Path, cfg: RunConfig, metrics: dict, info: dict) -> None:
    """Writes ``README.md``: data, strategy, metrics and how to load the model."""
    keys = ["accuracy", "f1_macro", "precision_macro", "recall_macro", "mae", "rmse", "r2"]
    rows = []
    for split in ("validation", "test"):
        for prefix, block in (
            ("fine-tuned", metrics.get(split, {})),
            ("pretrained baseline (linear probe)", metrics.get("pretrained_baseline", {}).get(split, {})),
        ):
            vals = [_fmt(block[k]) for k in keys if k in block]
            if vals:
                rows.append(f"| {split} | {prefix} | " + " | ".join(vals) + " |")
    present = [k for k in keys if k in metrics.get("test", {})]
    table = "\n".join(
        ["| split | model | " + " | ".join(present) + " |", "|---|---|" + "---|" * len(present), *rows]
    )
    text = f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [transferkit, {cfg.strategy.name}]
---
# {run_dir.name}

Fine-tuned with [transferkit](https://pypi.org/project/transferkit/) from `{info["backbone"]}`.

- **Task:** {cfg.task.type} ({cfg.task.problem}); labels: {", ".join(info["labels"]) or "numeric target"}
- **Data:** {info["source"]}: {info["sizes"]["train"]} train / {info["sizes"]["validation"]} validation / {info["sizes"]["test"]} test examples
- **Strategy:** `{cfg.strategy.name}`; trainable parameters {info["trainable_parameters"]:,} of {info["total_parameters"]:,}
- **Training:** {training_summary(cfg, metrics)}; pooling `{info["pooling"]}`

## Metrics

{table}

## How to load

```python
import transferkit
model = transferkit.load("{run_dir}")
model.predict(["a new example"])
```

Plain `transformers` (the folder carries its model code, `modeling_transferkit.py`, which needs `trust_remote_code=True`):

```python
from transformers import pipeline
clf = pipeline("text-classification", model="{run_dir}/model", trust_remote_code=True)
clf("a new example", top_k=None)
```
"""
    atomic_write_text(run_dir / "README.md", text)
