"""Moved to :mod:`transferkit.inference`: a forward pass in input order serves prediction and feature caching
as much as training, and ``strategies/cache.py`` needs it without importing ``training`` (whose loop imports
``strategies``: an import cycle).

Kept only for the importers that still name this path (``api.py``, ``training/loop.py``,
``tasks/image_classification.py``, ``ner/fit.py``, ``lm/fit.py``); delete it once they import
:mod:`transferkit.inference`.
"""

from transferkit.inference import forward_in_order, ordered_loader, single_process_budget

__all__ = ["forward_in_order", "ordered_loader", "single_process_budget"]
