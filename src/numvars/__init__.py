"""numvars: find symbol-like number variables inside neural networks (SPEC.md)."""
__version__ = "0.1.0"
