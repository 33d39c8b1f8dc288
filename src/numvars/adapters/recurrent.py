"""A recurrent model adapted through nnsight, step by step: its site is the hidden state of one `nn.GRU`,
`nn.RNN` or `nn.LSTM` inside it ([h; c] for an LSTM, as numvars' own LSTM), and numvars' step protocol
(`initial_state`, `step`, `readout`) runs the model one token at a time with that module's initial state
replaced (nnsight edits its inputs) and its output read (or replaced, for `readout`). An intervened state thus
changes the next prediction and everything after it, as in numvars' own recurrent models."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import NumvarsError
from .base import Adapted, model_logits
from .tokens import TokenMap


class RecurrentAdapter(Adapted):
    def __init__(self, model: nn.Module, site: str, token_map: TokenMap):
        super().__init__(model, site, token_map)
        rnn = self.site_module
        if rnn.num_layers != 1 or rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise NumvarsError(f"module {site!r} is a {type(rnn).__name__} of {rnn.num_layers} layer(s)"
                               f"{', bidirectional' if rnn.bidirectional else ''}; the adapter steps one "
                               f"unidirectional layer without projection")
        self.lstm = isinstance(rnn, nn.LSTM)
        self.hidden = rnn.hidden_size
        self.batch_first = rnn.batch_first

    @property
    def state_size(self) -> int:
        return 2 * self.hidden if self.lstm else self.hidden

    def initial_state(self, batch_size: int) -> Tensor:
        """The state before the first token: zeros, torch's default initial state."""
        return torch.zeros(batch_size, self.state_size, device=self._device())

    def _hx(self, state: Tensor):
        if self.lstm:
            h, c = state.split(self.hidden, dim=-1)
            return h[None].contiguous(), c[None].contiguous()
        return state[None].contiguous()

    def _trace(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, object, Tensor]:
        """Run the model on task tokens (B, M) from `state`: (task logits (B, M, V), the module's final hx,
        its output sequence (B, M, H))."""
        env = self.envelope()
        with env.trace(self.tokens.encode(tokens)):
            node = self.at(env, self.site)
            args, kwargs = node.inputs
            node.inputs = ((args[0], self._hx(state)), {k: v for k, v in kwargs.items() if k != "hx"})
            seq, hx = node.output
            seq, hx = seq.save(), hx.save()
            out = env.output.save()
        seq = seq if self.batch_first else seq.transpose(0, 1)
        return self.tokens.logits(model_logits(out)), hx, seq

    def step(self, tokens: Tensor, state: Tensor) -> Tensor:
        """Consume task tokens (B,) from `state` (B, d): the new state."""
        _, hx, _ = self._trace(tokens[:, None], state)
        return torch.cat([hx[0][0], hx[1][0]], dim=-1) if self.lstm else hx[0]

    def readout(self, state: Tensor) -> Tensor:
        """Task logits (B, V) predicted from `state`: the module's output replaced by it for one position."""
        h = state[:, : self.hidden]
        env = self.envelope()
        placeholder = torch.zeros(len(state), 1, dtype=torch.long, device=state.device)
        with env.trace(self.tokens.encode(placeholder)):
            node = self.at(env, self.site)
            seq = h[:, None] if self.batch_first else h[None]
            node.output = (seq, self._hx(state))
            out = env.output.save()
        return self.tokens.logits(model_logits(out))[:, 0]

    def run_from(self, state: Tensor, tokens: Tensor) -> Tensor:
        """From `state`, consume task tokens (B, M) in one run: task logits (B, M+1, V), position 0 being
        readout(state) (numvars' fast path of the recurrent site)."""
        logits, _, _ = self._trace(tokens, state)
        return torch.cat([self.readout(state)[:, None], logits], dim=1)

    def states(self, tokens: Tensor) -> Tensor:
        """The state after each token (B, L, d): the module's output sequence (a GRU's or RNN's output is its
        state); an LSTM's cell state is not in its output, so it steps."""
        if self.lstm:
            from ..models import step_states
            return step_states(self, tokens)
        _, _, seq = self._trace(tokens, self.initial_state(len(tokens)))
        return seq
