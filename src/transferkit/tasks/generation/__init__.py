"""Text generation (causal LM): prompt/completion pairs or chats.

``sources.py`` turns the configured sources into examples, ``data.py`` encodes them (completion-only loss,
packing), ``model.py`` is the LM seen through the backbone contract, ``fit.py`` the recipe, ``generate.py``
decoding and its metrics (perplexity, exact match, ROUGE-L), ``predictor.py`` the loaded run and ``card.py``
the model card.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.tasks.registry import TaskSpec, register_task


def _fit(cfg, frames, resume: bool = False):
    from transferkit.tasks.generation.fit import fit_generation

    return fit_generation(cfg, frames, resume)


def load(run_dir: str | Path, batch_size: int = 16):
    from transferkit.tasks.generation.predictor import GenerationPredictor

    return GenerationPredictor(run_dir, batch_size)


_NEW_HEAD = "trains a new head on pooled features or unfreezes from one; it does not apply to generation. Use full, lora, adalora, ia3, top-k or discriminative"
register_task(
    TaskSpec(
        name="generation",
        description="Fine-tune a causal LM on prompt/completion pairs or chats (JSONL); perplexity, exact match, ROUGE-L.",
        fit=_fit,  # not `fit`: the fit submodule would replace it on the package once imported
        load=load,
        inputs="prompt",
        metric_keys=("perplexity", "exact_match", "rouge_l"),
        config_section="generation",
        main_metric="exact_match",
        default_backbone="smollm2-135m",
        budget_unit="examples",
        label_column=None,
        classical_note="generation has no classical baseline; scratch (the same LM config from random init) is the from-scratch reference",
        refused_strategies={name: _NEW_HEAD for name in ("head", "linear-probe", "lp-ft", "gradual")},
    )
)
