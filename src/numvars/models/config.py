"""Model configuration: one frozen dataclass holds every size."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .. import options
from ..errors import NumvarsError

PAPER_ARCHS = ("gru", "lstm", "transformer")       # the paper's architectures (the benchmarks' defaults)
ARCHS = (*PAPER_ARCHS, "hf")                        # hf: a GPT-2 of transformers (models/hf.py)
POSITIONAL = ("rope", "none")
MAX_D_MODEL = 2048   # the paper's largest is 96; beyond this the d×d alignment maps and the models outgrow memory
MAX_LAYERS = 48


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "gru"
    vocab_size: int = 9
    d_model: int = 20
    n_layers: int = 2          # Transformer and hf only
    n_heads: int = 1           # Transformer and hf only
    pos: str = "rope"          # Transformer only: "rope" or "none" (NPE)
    head_dropout: float = 0.5  # dropout on the hidden layer of the MLP head
    layer_dropout: float = 0.0  # Transformer and hf only: dropout on attention weights, each block's residual
                                # branches and its MLP's hidden layer (the authors' code uses 0.5)

    def __post_init__(self):
        options.canonicalize(self)
        if self.arch not in ARCHS:
            raise NumvarsError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.d_model < 1:
            raise NumvarsError(f"d_model={self.d_model} must be a positive integer, e.g. d_model=20")
        options.check_range("d_model", self.d_model, 1, MAX_D_MODEL,
                            "the paper's largest is 96; larger states outgrow memory and the d×d alignment maps")
        options.check_range("vocab_size", self.vocab_size, 1, 100_000)
        if self.arch == "lstm" and self.d_model % 2:
            raise NumvarsError(f"LSTM state [h; c] splits d_model in halves; d_model={self.d_model} must be even")
        if self.arch == "transformer" and self.pos not in POSITIONAL:
            raise NumvarsError(f"unknown pos {self.pos!r}; choose rope or none")
        if self.arch in ("transformer", "hf"):
            options.check_range("n_layers", self.n_layers, 1, MAX_LAYERS)
            options.check_range("n_heads", self.n_heads, 1, self.d_model, "each head needs at least one unit")
            rope = self.arch == "transformer" and self.pos == "rope"     # rotary pairs need even heads
            if self.d_model % self.n_heads or (rope and (self.d_model // self.n_heads) % 2):
                size = " of even size" if self.arch == "transformer" else ""
                raise NumvarsError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads{size}")
        if not 0 <= self.head_dropout < 1:
            raise NumvarsError(f"head_dropout={self.head_dropout} must be in [0, 1)")
        if not 0 <= self.layer_dropout < 1:
            raise NumvarsError(f"layer_dropout={self.layer_dropout} must be in [0, 1)")
        if self.layer_dropout and self.arch not in ("transformer", "hf"):
            raise NumvarsError("layer_dropout is for the Transformer's blocks; recurrent models have head_dropout")

    def to_dict(self) -> dict:
        return asdict(self)
