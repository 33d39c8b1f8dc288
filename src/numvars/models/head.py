"""The output head shared by every model: a 2-layer MLP (hidden 4·d, GELU, dropout)."""
import torch
from torch import Tensor, nn


class Dropout(nn.Module):
    """Inverted dropout, as nn.Dropout, drawing its mask with `rand` (on these CPUs torch's
    `bernoulli_` took ~4.5 ms per training step at d=20, a quarter of the step; `rand` half that)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


class MLPHead(nn.Sequential):
    def __init__(self, d_in: int, d_model: int, vocab_size: int, dropout: float):
        super().__init__(nn.Linear(d_in, 4 * d_model), nn.GELU(), Dropout(dropout),
                         nn.Linear(4 * d_model, vocab_size))
