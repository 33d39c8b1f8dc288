"""numvars: find symbol-like number variables inside neural networks."""
__version__ = "0.1.0"
