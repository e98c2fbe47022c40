"""The model card (``RUN/README.md``) of a token-classification run."""

from __future__ import annotations

from pathlib import Path

from transferkit.artifacts import training_summary
from transferkit.config import RunConfig
from transferkit.utils.io import atomic_write_text


def _f(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_token_model_card(
    run_dir: Path, cfg: RunConfig, metrics: dict, backbone: str, splits, sizes: dict, saved: str | None
) -> None:
    """Writes ``README.md``: data, strategy, entity metrics per split and per type, how to load."""
    keys = ["f1", "precision", "recall", "f1_macro", "accuracy"]
    rows = []
    for split in ("validation", "test"):
        for who, block in (
            ("fine-tuned", metrics.get(split, {})),
            ("pretrained baseline (linear probe)", metrics.get("pretrained_baseline", {}).get(split, {})),
        ):
            if block:
                rows.append(f"| {split} | {who} | " + " | ".join(_f(block.get(k)) for k in keys) + " |")
    types = metrics.get("test", {}).get("per_type", {})
    per_type = "\n".join(
        f"| {t} | {_f(v['precision'])} | {_f(v['recall'])} | {_f(v['f1'])} | {v['support']} |"
        for t, v in types.items()
    )
    remote = saved == "TransferkitForTokenClassification"
    trust = ", trust_remote_code=True" if remote else ""
    text = f"""---
library_name: transformers
pipeline_tag: token-classification
tags: [transferkit, {cfg.strategy.name}, ner]
---
# {run_dir.name}

Fine-tuned with transferkit from `{backbone}` for token classification (named entities).

- **Tags:** {splits.scheme.upper()}; entity types: {", ".join(sorted({lab[2:] for lab in splits.labels if lab != "O"}))}
- **Data:** {splits.source}: {sizes["train"]} train / {sizes["validation"]} validation / {sizes["test"]} test sentences
- **Strategy:** `{cfg.strategy.name}`; trainable parameters {metrics["trainable_parameters"]:,} of {metrics["total_parameters"]:,}
- **Training:** {training_summary(cfg, metrics)}; windows of {cfg.backbone.max_length} sub-tokens, stride {cfg.tokens.stride}
- **Saved as:** `{saved or "(model not saved)"}`

## Entity metrics (seqeval, strict mode)

| split | model | {" | ".join(keys)} |
|---|---|{"---|" * len(keys)}
{chr(10).join(rows)}

Test, per entity type:

| type | precision | recall | f1 | support |
|---|---|---|---|---|
{per_type}

## How to load

```python
import transferkit
model = transferkit.load("{run_dir}")
model.predict(["Angela Merkel visited Paris."])  # entity spans with character offsets
```

Plain `transformers`:

```python
from transformers import pipeline
ner = pipeline("token-classification", model="{run_dir}/model", aggregation_strategy="first"{trust})
ner("Angela Merkel visited Paris.")
```
"""
    atomic_write_text(run_dir / "README.md", text)
