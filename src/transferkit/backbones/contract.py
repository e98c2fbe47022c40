"""The backbone contract strategies rely on: feature width and ordered layer groups.

Groups run bottom to top: group 0 is the embeddings, then one group per transformer block (for image
models: stem, stages). Freezing, partial caching and layer-wise learning rates address groups by index,
never by a model's attribute names.
"""

from __future__ import annotations

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
    """Ordered ``(name, modules)`` groups, bottom (embeddings) to top (last block and final norm).

    Every parameter of the backbone belongs to exactly one group.
    """
    if hasattr(backbone, "layer_groups"):  # backbones that define their own grouping (e.g. image models)
        return backbone.layer_groups()
    blocks = _blocks(backbone)
    block_ids = {id(p) for p in blocks.parameters()}
    embed = backbone.get_input_embeddings() if hasattr(backbone, "get_input_embeddings") else None
    groups: list[tuple[str, list[nn.Module]]] = []
    # Modules outside the blocks: those holding the input embeddings go to the bottom, the rest (final norms) on top.
    bottom, top = [], []
    for name, child in backbone.named_children():
        if any(id(p) in block_ids for p in child.parameters()):
            # the container of the blocks: siblings of the ModuleList inside it (e.g. a final norm) go on top
            for sub_name, sub in child.named_children():
                if sub is not blocks and not any(id(p) in block_ids for p in sub.parameters()):
                    top.append(sub) if next(sub.parameters(), None) is not None else None
            continue
        if next(child.parameters(), None) is None:
            continue
        holds_embed = embed is not None and any(m is embed for m in child.modules())
        (bottom if holds_embed or not groups and not top and name.startswith("emb") else top).append(child)
    groups.append(("embeddings", bottom))
    for i, block in enumerate(blocks):
        groups.append((f"block.{i}", [block]))
    if top:
        groups[-1] = (groups[-1][0], groups[-1][1] + top)
    return groups
