"""The model card (``README.md``) of a generation run."""

from __future__ import annotations

from pathlib import Path

from transferkit.artifacts import training_summary
from transferkit.config import RunConfig
from transferkit.utils.io import atomic_write_text

KEYS = ("perplexity", "exact_match", "rouge_l")


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_generation_card(
    run_dir: Path, cfg: RunConfig, metrics: dict, backbone: str, source: str, sizes: dict
) -> None:
    """Writes ``README.md``: data, strategy, metrics before and after, and how to generate."""
    rows = []
    for split in ("validation", "test"):
        for name, block in (
            ("fine-tuned", metrics.get(split, {})),
            ("before fine-tuning", metrics.get("pretrained_baseline", {}).get(split, {})),
        ):
            if block:
                rows.append(
                    f"| {split} | {name} | " + " | ".join(_fmt(block.get(k, "-")) for k in KEYS) + " |"
                )
    table = "\n".join(["| split | model | " + " | ".join(KEYS) + " |", "|---|---|---|---|---|", *rows])
    text = f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [transferkit, {cfg.strategy.name}]
---
# {run_dir.name}

Fine-tuned with [transferkit](https://pypi.org/project/transferkit/) from `{backbone}` for text generation.

- **Data:** {source}: {sizes["train"]} train / {sizes["validation"]} validation / {sizes["test"]} test examples
- **Strategy:** `{cfg.strategy.name}`; trainable parameters {metrics["trainable_parameters"]:,} of {metrics["total_parameters"]:,}
- **Training:** {training_summary(cfg, metrics)}; loss on completion tokens only; packing {"on" if cfg.generation.packing else "off"}

## Metrics

Perplexity of the reference completions; exact match and ROUGE-L of greedy completions (up to
{cfg.generation.eval_samples} examples per split, at most {cfg.generation.max_new_tokens} new tokens).

{table}

## How to use

```python
import transferkit
model = transferkit.load("{run_dir}")
model.predict(["a prompt"])  # [{{"text": "its completion"}}]
```

```bash
transferkit generate {run_dir} --prompt "a prompt" --max-new-tokens 32 --stream
```

Plain `transformers`: `AutoModelForCausalLM.from_pretrained("{run_dir}/model")` (no remote code).
"""
    atomic_write_text(run_dir / "README.md", text)
