"""The ``transferkit`` command line: one thin module per command over the library (``main`` dispatches)."""
