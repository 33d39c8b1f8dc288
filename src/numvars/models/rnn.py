"""GRU and LSTM language models with the step protocol (docs/concepts.md).

Training and bulk evaluation use the fused kernels (`nn.GRU`, `nn.LSTM`); `step` writes out
the same cell equations by hand from the same weights. The plain step path is the
specification: a test proves the fused path gives the same logits.

The analysed state (site `state`) is the recurrent state after consuming each token: h for
the GRU (size d); [h; c] for the LSTM, with h and c of size d/2 each, so both states have
size d (as in the paper's code). The LSTM head reads h only.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .head import MLPHead


def step_states(model: nn.Module, tokens: Tensor) -> Tensor:
    """The state after consuming each token, (B, L, d), for any model with the step protocol."""
    state, out = model.initial_state(tokens.shape[0]), []
    for j in range(tokens.shape[1]):
        state = model.step(tokens[:, j], state)
        out.append(state)
    return torch.stack(out, dim=1)


class RecurrentLM(nn.Module):
    """Embedding → one recurrent cell → MLP head. Subclasses supply the cell."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)

    def initial_state(self, batch_size: int) -> Tensor:
        return self.embed.weight.new_zeros(batch_size, self.cfg.d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits (B, L, V) predicting token j+1 from tokens[:, :j+1]."""
        return self.head(self._fused(self.embed(tokens), self.initial_state(tokens.shape[0])))

    def run_from(self, state: Tensor, tokens: Tensor) -> Tensor:
        """From a state, consume tokens (B, M) with the fused kernel.
        Returns logits (B, M+1, V): position 0 is readout(state), position j+1 follows tokens[:, j]."""
        out = self._fused(self.embed(tokens), state)              # (B, M, d_out)
        first = self._readout_input(state).unsqueeze(1)           # (B, 1, d_out)
        return self.head(torch.cat([first, out], dim=1))

    def states(self, tokens: Tensor) -> Tensor:
        """The state after consuming each token: (B, L, d), by the step path."""
        return step_states(self, tokens)

    def readout(self, state: Tensor) -> Tensor:
        return self.head(self._readout_input(state))


class GRULM(RecurrentLM):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.rnn = nn.GRU(cfg.d_model, cfg.d_model, batch_first=True)
        self.head = MLPHead(cfg.d_model, cfg.d_model, cfg.vocab_size, cfg.head_dropout)

    def _fused(self, x: Tensor, state: Tensor) -> Tensor:
        return self.rnn(x, state.unsqueeze(0).contiguous())[0]

    def _readout_input(self, state: Tensor) -> Tensor:
        return state

    def states(self, tokens: Tensor) -> Tensor:
        # a GRU's output sequence *is* its state sequence, so the fused kernel suffices
        return self._fused(self.embed(tokens), self.initial_state(tokens.shape[0]))

    def step(self, tokens: Tensor, state: Tensor) -> Tensor:
        r = self.rnn
        gi = self.embed(tokens) @ r.weight_ih_l0.T + r.bias_ih_l0      # (B, 3d): r, z, n
        gh = state @ r.weight_hh_l0.T + r.bias_hh_l0
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        candidate = torch.tanh(i_n + reset * h_n)
        return (1 - update) * candidate + update * state


class LSTMLM(RecurrentLM):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.half = cfg.d_model // 2
        self.rnn = nn.LSTM(cfg.d_model, self.half, batch_first=True)
        self.head = MLPHead(self.half, cfg.d_model, cfg.vocab_size, cfg.head_dropout)

    def _fused(self, x: Tensor, state: Tensor) -> Tensor:
        h, c = state.split(self.half, dim=-1)
        return self.rnn(x, (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))[0]

    def _readout_input(self, state: Tensor) -> Tensor:
        return state[..., : self.half]

    def step(self, tokens: Tensor, state: Tensor) -> Tensor:
        r = self.rnn
        h, c = state.split(self.half, dim=-1)
        gates = self.embed(tokens) @ r.weight_ih_l0.T + r.bias_ih_l0 + h @ r.weight_hh_l0.T + r.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=-1)                        # torch's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], dim=-1)
