"""Model configuration: one frozen dataclass holds every size."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import NumvarsError

ARCHS = ("gru", "lstm", "transformer")
POSITIONAL = ("rope", "none")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "gru"
    vocab_size: int = 9
    d_model: int = 20
    n_layers: int = 2          # Transformer only
    n_heads: int = 1           # Transformer only
    pos: str = "rope"          # Transformer only: "rope" or "none" (NPE)
    head_dropout: float = 0.5  # dropout on the hidden layer of the MLP head

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise NumvarsError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.d_model < 1:
            raise NumvarsError(f"d_model={self.d_model} must be a positive integer, e.g. d_model=20")
        if self.arch == "lstm" and self.d_model % 2:
            raise NumvarsError(f"LSTM state [h; c] splits d_model in halves; d_model={self.d_model} must be even")
        if self.arch == "transformer":
            if self.pos not in POSITIONAL:
                raise NumvarsError(f"unknown pos {self.pos!r}; choose rope or none")
            if self.n_layers < 1 or self.n_heads < 1:
                raise NumvarsError("n_layers and n_heads must be >= 1")
            if self.d_model % self.n_heads or (self.pos == "rope" and (self.d_model // self.n_heads) % 2):
                raise NumvarsError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")
        if not 0 <= self.head_dropout < 1:
            raise NumvarsError(f"head_dropout={self.head_dropout} must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)
