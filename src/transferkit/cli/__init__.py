"""The ``transferkit`` command line: one thin command table over the library."""
