"""A finished generation run: complete prompts, stream a completion, score a file.

Example:
    >>> model = transferkit.load("runs/my-generation-run")  # doctest: +SKIP
    >>> model.predict(["Is this review fresh or rotten?\\nA gem.\\nAnswer:"])  # doctest: +SKIP
    [{'text': ' fresh'}]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from transferkit import hardware
from transferkit.artifacts import read_run
from transferkit.config import GenerationTaskConfig
from transferkit.errors import DataError
from transferkit.predictors import BasePredictor, add_columns, refuse_existing, write_table
from transferkit.tasks.generation.data import (
    Example,
    LMCollator,
    LMDataset,
    prompt_ids,
    read_examples,
    render,
)
from transferkit.tasks.generation.generate import generate_ids, generation_scores, perplexity, stream_text


class GenerationPredictor(BasePredictor):
    """Loads ``RUN/model`` (a plain causal LM) with the prompt rendering the run was trained with.

    Args:
        run_dir: A folder written by ``transferkit fit --task generation``.
        batch_size: Prompts per generation batch.
    """

    task = "generation"

    def __init__(self, run_dir: str | Path, batch_size: int = 16):
        # transformers, PIL, huggingface_hub ... load on first use, not when predictor is imported
        from transformers import AutoModelForCausalLM

        # transformers, PIL, accelerate ... load on first use, not when predictor is imported
        from transferkit.tasks.generation.model import load_tokenizer

        self.run_dir, manifest, self.metrics = read_run(run_dir)
        self.labels: list[str] = []
        saved = manifest.generation.model_dump() if manifest.generation else {}
        self.settings = GenerationTaskConfig(**saved)
        self.max_length: int = manifest.max_length or 256
        self.batch_size = batch_size
        self.model = AutoModelForCausalLM.from_pretrained(self.run_dir / "model")
        self.model.eval()
        self.tokenizer = load_tokenizer(str(self.run_dir / "model"))

    def _ids(self, prompt: str | list[dict]) -> list[int]:
        """Prompt ids rendered as in training; a list of chat messages goes through the chat template."""
        if isinstance(prompt, list):
            example = Example(None, "", messages=[*prompt, {"role": "assistant", "content": ""}])
        else:
            example = Example(str(prompt), "")
        return self._ids_for(example, self.settings)

    def predict(
        self,
        prompts: Sequence[str | list[dict]] | str,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        prefix_cache: bool | None = None,
    ) -> list[dict]:
        """Completes each prompt.

        Args:
            prompts: Prompts (or one prompt); a prompt may also be a chat (list of {role, content}).
            max_new_tokens: Longest completion; None: the run's ``generation.max_new_tokens``.
            temperature: 0 is greedy decoding; above 0 samples.
            top_p: Nucleus sampling mass (with temperature > 0).
            prefix_cache: Run a prefix the prompts share once (see ``generation.prefix_cache``); None: the
                predictor's ``settings.prefix_cache``.

        Returns:
            ``[{"text": completion}, ...]`` in input order.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        tok = self.tokenizer
        with hardware.autocast(self.precision):
            ids, _ = generate_ids(
                self.model,
                [self._ids(p) for p in prompts],
                tok.pad_token_id,
                tok.eos_token_id,
                max_new_tokens or self.settings.max_new_tokens,
                self.batch_size,
                temperature,
                top_p,
                prefix_cache=self.settings.prefix_cache if prefix_cache is None else prefix_cache,
            )
        return [{"text": tok.decode(row, skip_special_tokens=True)} for row in ids]

    def generate(self, prompt: str, **kwargs) -> str:
        """The completion of one prompt (keyword arguments as :meth:`predict`)."""
        return self.predict([prompt], **kwargs)[0]["text"]

    def stream(
        self, prompt: str, max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0
    ) -> Iterator[str]:
        """Yields the completion of ``prompt`` in pieces as they are generated."""
        yield from stream_text(
            self.model,
            self.tokenizer,
            self._ids(prompt),
            max_new_tokens or self.settings.max_new_tokens,
            temperature,
            top_p,
            self.precision,
        )

    def evaluate(
        self,
        path: str | Path,
        input_column: str | None = None,
        label_column: str | None = None,
        **columns: str | None,
    ) -> dict:
        """Perplexity, exact match and ROUGE-L (greedy) on a JSONL file of prompt/completion pairs or chats.

        Args:
            path: The JSONL file.
            input_column: The prompt field (default: the run's ``generation.prompt_column``).
            label_column: The completion field (default: the run's ``generation.completion_column``).
            **columns: Other ``generation`` column settings, e.g. ``messages_column``.
        """
        # transformers, sklearn, scipy ... load on first use, not when predictor is imported
        from transferkit.inference import forward_in_order

        # transformers, PIL, accelerate ... load on first use, not when predictor is imported
        from transferkit.tasks.generation.model import CausalLMTransfer, lm_forward

        update = {k: v for k, v in columns.items() if v is not None}
        update |= {
            k: v for k, v in (("prompt_column", input_column), ("completion_column", label_column)) if v
        }
        settings = self.settings.model_copy(update=update)
        examples = read_examples(path, settings)
        data = LMDataset(examples, self.tokenizer, settings, self.max_length)
        wrapped = CausalLMTransfer(self.model)
        stats = forward_in_order(
            lambda b: lm_forward(wrapped, b), data, LMCollator(self.tokenizer.pad_token_id), self.batch_size,
            precision=self.precision,
        )  # fmt: skip
        out = perplexity(stats)
        prompts = [self._ids_for(e, settings) for e in examples]
        with hardware.autocast(self.precision):
            scores = generation_scores(
                self.model,
                self.tokenizer,
                prompts,
                [e.completion for e in examples],
                settings.max_new_tokens,
                self.batch_size,
                settings.prefix_cache,
            )
        return out | scores | {"num_examples": len(examples)}

    def _ids_for(self, example: Example, settings: GenerationTaskConfig) -> list[int]:
        text, _, templated = render(example, self.tokenizer, settings)
        return prompt_ids(text, self.tokenizer, templated)[-self.max_length :]

    def predict_file(self, path: str | Path, output: str | Path, input_column: str | None = None) -> Path:
        """Reads prompts from ``input_column`` (default: the run's prompt column) of a CSV/TSV/JSONL/Parquet file;
        writes the rows plus a ``generated`` column to a new file (never overwriting one; an input column
        already named ``generated`` is an error)."""
        # sklearn, scipy, pandas ... load on first use, not when predictor is imported
        from transferkit.data.readers import read_table

        refuse_existing(output)
        column = input_column or self.settings.prompt_column
        frame = read_table(path)
        if column not in frame.columns:
            raise DataError(
                f"{path}: no column {column!r} (columns: {', '.join(map(str, frame.columns))}); set --text-column"
            )
        add_columns(frame, {"generated": None}, path)  # a clash fails before generating
        generated = [p["text"] for p in self.predict(frame[column].astype(str).tolist())]
        return write_table(add_columns(frame, {"generated": generated}, path), output)
