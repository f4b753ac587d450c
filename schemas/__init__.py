"""Shapes only, no I/O: the in-toto Statement and one module per predicate."""
