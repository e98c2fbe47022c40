"""The backbone contract strategies rely on: feature width and ordered layer groups.

Groups run bottom to top: group 0 is the embeddings, then one group per transformer block (for image
models: stem, stages). Freezing, partial caching and layer-wise learning rates address groups by index,
never by a model's attribute names.
"""

from __future__ import annotations

import torch
from torch import nn


def num_features(backbone: nn.Module) -> int:
    """Width of the pooled features the backbone produces."""
    config = getattr(backbone, "config", None)
    for key in ("hidden_size", "d_model", "dim", "num_features"):
        if config is not None and isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    if isinstance(getattr(backbone, "num_features", None), int):
        return backbone.num_features
    raise ValueError(f"cannot tell the feature width of {type(backbone).__name__}")


def _blocks(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the longest ModuleList (ties: the first found)."""
    best: nn.ModuleList | None = None
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        raise ValueError(f"{type(backbone).__name__} has no stack of blocks (nn.ModuleList)")
    return best


def layer_groups(backbone: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Ordered ``(name, modules)`` groups, bottom (embeddings) to top (last block and any final norm).

    Every parameter of the backbone belongs to exactly one group.
    """
    if hasattr(backbone, "layer_groups"):  # backbones that define their own grouping (e.g. image models)
        return backbone.layer_groups()
    blocks = _blocks(backbone)
    in_blocks = {id(p) for p in blocks.parameters()}

    def has_params(m: nn.Module) -> bool:
        return next(m.parameters(), None) is not None

    bottom: list[nn.Module] = []  # modules before the blocks (embeddings)
    top: list[nn.Module] = []  # modules after the blocks (final norms)
    seen_blocks = False
    for child in backbone.children():
        if not has_params(child):
            continue
        if any(id(p) in in_blocks for p in child.parameters()):
            seen_blocks = True
            # the container of the blocks: its other children with weights (e.g. a final norm) go on top
            top += [
                sub
                for sub in child.children()
                if sub is not blocks
                and has_params(sub)
                and not any(id(p) in in_blocks for p in sub.parameters())
            ]
            continue
        (top if seen_blocks else bottom).append(child)
    groups = [("embeddings", bottom)] + [(f"block.{i}", [block]) for i, block in enumerate(blocks)]
    groups[-1] = (groups[-1][0], groups[-1][1] + top)
    return groups


def hidden_after(backbone: nn.Module, batch: dict, group: int):
    """(B, T, D) token features after layer group ``group`` (0 = embeddings) for a token batch."""
    if hasattr(backbone, "hidden_after"):
        return backbone.hidden_after(batch, group)
    out = backbone(**batch, output_hidden_states=True)
    return out.hidden_states[group]  # hidden_states[0] = embeddings, [i] = after block i-1


def run_from(backbone: nn.Module, hidden, attention_mask, group: int):
    """Runs layer groups ``group..top`` on cached (B, T, D) features; returns the last hidden state.

    Only for backbones whose top group is a plain block (BERT-style encoders) or that define ``run_from``.
    """
    if hasattr(backbone, "run_from"):
        return backbone.run_from(hidden, attention_mask, group)
    blocks = _blocks(backbone)
    # (B, T) 1/0 -> (B, 1, 1, T) additive: 0 for real tokens, the dtype's minimum for padding
    mask = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
    for block in list(blocks)[group - 1 :]:  # group g >= 1 is block g-1
        out = block(hidden, attention_mask=mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def supports_hidden_cache(backbone: nn.Module) -> bool:
    """True when the top groups can run from cached features (no modules above the last block).

    A backbone may say so itself (``supports_hidden_cache``); one with its own ``run_from`` can.
    """
    declared = getattr(backbone, "supports_hidden_cache", None)
    if isinstance(declared, bool):
        return declared
    if hasattr(backbone, "run_from"):
        return True
    groups = layer_groups(backbone)
    return len(groups[-1][1]) == 1 and not getattr(
        getattr(backbone, "config", None), "is_encoder_decoder", False
    )
