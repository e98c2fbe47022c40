"""Token classification (NER): model, training and prediction on top of the shared library.

The data side lives in :mod:`transferkit.data.conll` (readers, tagging schemes) and
:mod:`transferkit.data.tokens` (sub-word alignment, windows); metrics in :mod:`transferkit.evaluation.ner`.
"""
