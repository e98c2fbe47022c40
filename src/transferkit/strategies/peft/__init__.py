"""``lora``, ``adalora`` and ``ia3``: the trunk stays frozen; small adapters inside it train, through ``peft``.

One module per method (``lora.py``, ``adalora.py``, ``ia3.py``: typed settings, ``apply``, one
``register_strategy`` line); what they share is in ``common.py``, the layers they adapt in ``targets.py`` and
the lean LoRA / AdaLoRA layers in ``fused_layers.py``.

PEFT injects its layers into ``model.backbone`` in place, so the model keeps its class, ``head``, ``features``
and ``config``. The ``PeftModel`` wrapper lives in the plan, not in the model; it serves AdaLoRA's rank
allocation, saving the adapter in PEFT's format and merging it for export. A finished run holds::

    RUN/model/     the adapter merged into the backbone: a plain TransferkitForSequenceClassification
                   (``strategy.merge=false`` / ``--no-merge``: the untouched pretrained trunk and the trained
                   head; ``transferkit.load`` then applies the adapter, plain transformers does not)
    RUN/adapter/   adapter_config.json + adapter_model.safetensors (PEFT's format), head.safetensors,
                   transferkit.json (``{"merged": true|false}``)

To put the adapter back on the base backbone: ``PeftModel.from_pretrained(base_backbone, "RUN/adapter")`` and
``head.load_state_dict(safetensors.torch.load_file("RUN/adapter/head.safetensors"))``.

``target_modules: auto`` picks layers by the backbone's ``config.model_type``
(:data:`transferkit.strategies.peft.targets.FAMILIES`), inside the transformer blocks only (every layer group
above the embeddings); an unknown family gets every linear layer of the blocks, so new text, image or
causal-LM backbones need no entry here.

Learning rates: adapters start from zero (LoRA, AdaLoRA) or one (IA3) and are small, so they need a larger
step than full fine-tuning: they train at ``training.learning_rate x lr_multiplier`` (5e-4 for LoRA at the
defaults); the head at :func:`~transferkit.strategies.base.head_lr` for a frozen trunk.

Adding a method: write ``peft/NAME.py`` with a settings class derived from ``common._AdapterSettings`` and an
``apply`` that builds the PEFT config and calls ``common._adapt`` and ``common._plan``; end it with
``register_strategy(...)``, import it in ``strategies/__init__.py`` and add its row to the strategy test
matrix. The modules are imported by ``transferkit.strategies``, not here, so the registration order is
written in one place.

Example:
    >>> run = transferkit.fit(dataset="rotten_tomatoes", strategy="lora", overrides=["strategy.r=16"])  # doctest: +SKIP
"""
