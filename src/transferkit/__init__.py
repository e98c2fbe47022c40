"""transferkit: fine-tune pretrained models with the strategy that fits, prove the gain, serve them.

Example:
    >>> import transferkit
    >>> run = transferkit.fit(dataset="rotten_tomatoes", strategy="full", epochs=1)  # doctest: +SKIP
    >>> transferkit.load(run.run_dir).predict(["an instant classic"])  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["RunResult", "__version__", "compare", "fit", "load", "load_config"]


def __getattr__(name: str):
    # Lazy: `import transferkit` stays cheap (torch and transformers load on first use).
    if name in ("fit", "RunResult"):
        from transferkit import api

        return getattr(api, name)
    if name == "compare":
        from transferkit.comparison.runner import compare

        return compare
    if name == "load":
        from transferkit.api import load

        return load
    if name == "load_config":
        import transferkit.strategies  # noqa: F401  registers the strategy.* check that load_config runs
        from transferkit.config import load_config

        return load_config
    raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
