"""Many GRU or LSTM language models of one size as one grouped model.

G members share one fused `nn.GRU`/`nn.LSTM` of hidden size G·h (h = d for the GRU, d/2 for the
LSTM) whose weights are multiplied by a block-diagonal mask at every forward, so member i's units
only ever see member i's inputs and units, and the off-block weights get zero gradient (Adam, being
element-wise, then never moves them). Embeddings and MLP heads are per member, applied with
batched matmuls. Each member's block is copied in from a stand-alone model, so a member is
initialised exactly as `models.build(cfg, seed=seed_i)` would be, and `member(i)` gives it back as
a GRULM/LSTMLM. Every member reads its own batch: tokens (G, B, L) -> logits (G, B, L, V).

The plain path is the specification: a test proves each member's logits equal its solo model's.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import NumvarsError
from .config import ModelConfig
from .rnn import GRULM, LSTMLM

GATES = {"gru": 3, "lstm": 4}
WEIGHTS = ("rnn.weight_ih_l0", "rnn.weight_hh_l0")
BIASES = ("rnn.bias_ih_l0", "rnn.bias_hh_l0")

# the masked weights are fresh tensors each call, so cuDNN compacts them each call (measured: cheap)
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")


def pack_blocks(blocks: Tensor, gates: int) -> Tensor:
    """(G, gates·h, n_in) per-member weights -> (gates·G·h, G·n_in), block-diagonal within each gate."""
    g, rows, n_in = blocks.shape
    h = rows // gates
    out = blocks.new_zeros(gates, g, h, g, n_in)
    idx = torch.arange(g, device=blocks.device)
    out[:, idx, :, idx, :] = blocks.view(g, gates, h, n_in)     # advanced indices first: (G, gates, h, n_in)
    return out.view(gates * g * h, g * n_in)


def unpack_block(weight: Tensor, i: int, size: int, gates: int) -> Tensor:
    """Member i's (gates·h, n_in) block of a packed weight."""
    rows, cols = weight.shape
    h, n_in = rows // (gates * size), cols // size
    return weight.view(gates, size, h, size, n_in)[:, i, :, i, :].reshape(gates * h, n_in)


class GroupedLinear(nn.Module):
    """G independent linear layers: x (G, N, in) -> (G, N, out)."""

    def __init__(self, size: int, d_in: int, d_out: int, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size, d_out, d_in, device=device))
        self.bias = nn.Parameter(torch.zeros(size, d_out, device=device))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class GroupedRNN(nn.Module):
    """G members of one ModelConfig (arch gru or lstm). Parameter names mirror the solo model's."""

    def __init__(self, cfg: ModelConfig, size: int, device=None):
        super().__init__()
        if cfg.arch not in GATES:
            raise NumvarsError(f"grouped models are GRUs or LSTMs; got arch={cfg.arch!r}")
        self.cfg, self.size, self.gates = cfg, size, GATES[cfg.arch]
        d, v = cfg.d_model, cfg.vocab_size
        self.hidden = d if cfg.arch == "gru" else d // 2            # per member: h (the LSTM state is [h; c])
        # zero-filled, never drawn from the global random stream: members are copied in (`load_members`)
        rnn = nn.GRU if cfg.arch == "gru" else nn.LSTM
        with torch.device("meta"):
            self.embed = nn.Embedding(size * v, d)                   # member i's table: rows i·V .. (i+1)·V
            self.rnn = rnn(size * d, size * self.hidden, batch_first=True)
        self.embed.to_empty(device=device or "cpu")
        self.rnn.to_empty(device=device or "cpu")
        for p in (*self.embed.parameters(), *self.rnn.parameters()):
            nn.init.zeros_(p)
        self.fc1 = GroupedLinear(size, self.hidden, 4 * d, device)
        self.fc2 = GroupedLinear(size, 4 * d, v, device)
        ones = {"ih": torch.ones(size, self.gates * self.hidden, d, device=device),
                "hh": torch.ones(size, self.gates * self.hidden, self.hidden, device=device)}
        self.register_buffer("mask_ih", pack_blocks(ones["ih"], self.gates), persistent=False)
        self.register_buffer("mask_hh", pack_blocks(ones["hh"], self.gates), persistent=False)

    # --- building and extracting members ------------------------------------------------------

    @classmethod
    def from_models(cls, members: list[nn.Module]) -> "GroupedRNN":
        """The group of these stand-alone GRULM/LSTMLM models (one type and config), on their device."""
        first = members[0]
        if not isinstance(first, (GRULM, LSTMLM)) or any(type(m) is not type(first) or m.cfg != first.cfg
                                                         for m in members):
            raise NumvarsError("a group holds GRULM or LSTMLM models of one config (arch, d_model, vocabulary, "
                               "dropout); align or train the others separately")
        group = cls(first.cfg, len(members), device=first.embed.weight.device)
        group.load_members([m.state_dict() for m in members])
        return group

    def pack(self, states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Solo state dicts (or Adam moments keyed like them) -> this group's parameters by name."""
        out = {}
        for name in states[0]:
            stacked = torch.stack([s[name] for s in states])
            if name in WEIGHTS:
                out[name] = pack_blocks(stacked, self.gates)
            elif name in BIASES:
                out[name] = stacked.view(len(states), self.gates, -1).transpose(0, 1).reshape(-1)
            elif name == "embed.weight":
                out[name] = stacked.flatten(0, 1)
            else:
                out[name.replace("head.0", "fc1").replace("head.3", "fc2")] = stacked
        return out

    def unpack(self, tensors: dict[str, Tensor], i: int) -> dict[str, Tensor]:
        """Member i's part of tensors keyed like this group's parameters, keyed like the solo model's."""
        out = {}
        for name, t in tensors.items():
            if name in WEIGHTS:
                out[name] = unpack_block(t, i, self.size, self.gates)
            elif name in BIASES:
                out[name] = t.view(self.gates, self.size, -1)[:, i].reshape(-1)
            elif name == "embed.weight":
                out[name] = t.view(self.size, -1, t.shape[-1])[i]
            else:
                out[name.replace("fc1", "head.0").replace("fc2", "head.3")] = t[i]
        return {k: v.clone() for k, v in out.items()}

    @torch.no_grad()
    def load_members(self, states: list[dict[str, Tensor]]) -> None:
        params = dict(self.named_parameters())
        for name, value in self.pack(states).items():
            params[name].copy_(value)

    def member_state(self, i: int) -> dict[str, Tensor]:
        return self.unpack({k: v.detach() for k, v in self.named_parameters()}, i)

    def member(self, i: int) -> nn.Module:
        """Member i as a stand-alone GRULM/LSTMLM (a copy, on this group's device)."""
        with torch.random.fork_rng(devices=[]):        # a fresh model leaves the global stream alone
            model = (GRULM if self.cfg.arch == "gru" else LSTMLM)(self.cfg).to(self.embed.weight.device)
        model.load_state_dict(self.member_state(i))
        return model

    def select(self, keep: list[int]) -> "GroupedRNN":
        """A group of the members `keep` (a copy with their current weights)."""
        group = type(self)(self.cfg, len(keep), device=self.embed.weight.device)
        group.load_members([self.member_state(i) for i in keep])
        return group.train(self.training)

    def train(self, mode: bool = True) -> "GroupedRNN":
        # The fused RNN stays in train mode: cuDNN refuses backward through an RNN in eval mode, and
        # one layer without dropout computes the same numbers in either mode.
        super().train(mode)
        self.rnn.train()
        return self

    # --- running ------------------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> Tensor:
        return self.embed.weight.new_zeros(self.size, batch_size, self.cfg.d_model)

    def forward(self, tokens: Tensor, widths: list[int] | None = None,
                generators: list[torch.Generator] | None = None) -> Tensor:
        """Logits (G, B, L, V) predicting token j+1 of each member's batch from tokens[g, :, :j+1].
        In training mode with `generators`, member g's head-dropout mask is drawn from generators[g]
        with the shape of its own batch, (B, widths[g], 4d): the draw its solo run makes from the
        global stream (`head.Dropout`). Without generators (or with None for each) the group draws one
        mask from the global stream: one kernel instead of G, but not a member's solo stream."""
        out = self._fused(self._embed(tokens), self.initial_state(tokens.shape[1]))
        return self._head(out, widths, generators)

    def run_from(self, state: Tensor, tokens: Tensor) -> Tensor:
        """From states (G, N, d), consume tokens (G, N, M): logits (G, N, M+1, V), as RecurrentLM.run_from."""
        out = self._fused(self._embed(tokens), state)                       # (G, N, M, h)
        return self._head(torch.cat([state[..., : self.hidden].unsqueeze(2), out], dim=2))

    def _embed(self, tokens: Tensor) -> Tensor:
        """tokens (G, B, L) -> the fused RNN's input (B, L, G·d)."""
        offset = torch.arange(self.size, device=tokens.device).view(-1, 1, 1) * self.cfg.vocab_size
        x = self.embed(tokens + offset)                                     # (G, B, L, d)
        return x.permute(1, 2, 0, 3).flatten(2)

    def _fused(self, x: Tensor, state: Tensor) -> Tensor:
        """x (B, L, G·d), state (G, B, d) -> outputs (G, B, L, h)."""
        def joined(s: Tensor) -> Tensor:                                    # (G, B, h) -> (1, B, G·h)
            return s.transpose(0, 1).flatten(1).unsqueeze(0).contiguous()
        h = self.hidden
        hx = joined(state) if self.cfg.arch == "gru" else (joined(state[..., :h]), joined(state[..., h:]))
        weights = {"weight_ih_l0": self.rnn.weight_ih_l0 * self.mask_ih,
                   "weight_hh_l0": self.rnn.weight_hh_l0 * self.mask_hh}
        out = functional_call(self.rnn, weights, (x, hx))[0]                 # (B, L, G·h)
        return out.unflatten(2, (self.size, h)).permute(2, 0, 1, 3)

    def _head(self, x: Tensor, widths=None, generators=None) -> Tensor:
        """x (G, B, L, h) -> logits (G, B, L, V): Linear, GELU, dropout, Linear per member."""
        g, b, length, _ = x.shape
        z = F.gelu(self.fc1(x.reshape(g, b * length, -1))).view(g, b, length, -1)
        p = self.cfg.head_dropout
        if self.training and p > 0:
            z = z * self._dropout_mask(z, widths, generators) * (1.0 / (1.0 - p))
        return self.fc2(z.flatten(1, 2)).view(g, b, length, -1)

    def _dropout_mask(self, z: Tensor, widths, generators) -> Tensor:
        p = self.cfg.head_dropout
        if generators is None or all(gen is None for gen in generators):
            return torch.rand_like(z) >= p
        g, b, length, n = z.shape
        widths = widths or [length] * g
        keep = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
        for i, (width, gen) in enumerate(zip(widths, generators)):
            keep[i, :, :width] = torch.rand(b, width, n, generator=gen, device=z.device, dtype=z.dtype) >= p
        return keep
