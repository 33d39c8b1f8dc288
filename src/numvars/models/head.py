"""The output head shared by every model: a 2-layer MLP (hidden 4·d, GELU, dropout)."""
from torch import nn


class MLPHead(nn.Sequential):
    def __init__(self, d_in: int, d_model: int, vocab_size: int, dropout: float):
        super().__init__(nn.Linear(d_in, 4 * d_model), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(4 * d_model, vocab_size))
