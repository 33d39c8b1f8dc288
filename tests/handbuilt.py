"""Hand-built recurrent networks that follow the step protocol, with known answers.

`LineCounter` keeps the count on one known direction of its state (rotated by a fixed random
orthogonal matrix, so DAS has to find it). `ShiftCounter` keeps it as a one-hot position in a
shift register: no single direction carries the count, so a k=1 swap cannot move it.
"""
import torch
from torch import nn

from numvars.tasks import Task


def _token_sets(task: Task):
    demo = torch.zeros(task.vocab_size, dtype=torch.bool)
    demo[torch.as_tensor(task.demo_ids)] = True
    return demo, task.vocab["T"], task.resp_id, task.vocab["EOS"], task.vocab["BOS"]


class LineCounter(nn.Module):
    """State = Q·[count, phase, 0, ...]: +1 per demo token, −1 per response, phase 1 after T."""

    def __init__(self, task: Task, d: int = 6, seed: int = 2024):
        super().__init__()
        self.demo, self.trig, self.resp, self.eos, self.bos = _token_sets(task)
        self.d, self.vocab_size = d, task.vocab_size
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        self.register_buffer("q", q)
        self.dummy = nn.Parameter(torch.zeros(1))    # DAS freezes parameters; give it one

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, self.d)

    def _unrotate(self, state):
        return state @ self.q                         # back to [count, phase, ...]

    def _rotate(self, z):
        return z @ self.q.T

    def step(self, tokens, state):
        z = self._unrotate(state).clone()
        count, phase = z[:, 0], z[:, 1]
        count = count + self.demo[tokens].float() - (tokens == self.resp).float()
        phase = torch.where((tokens == self.trig) | (tokens == self.resp), torch.ones_like(phase), phase)
        z[:, 0], z[:, 1] = count, phase
        z = torch.where((tokens == self.bos)[:, None], torch.zeros_like(z), z)
        return z @ self.q.T

    def readout(self, state):
        z = self._unrotate(state)
        count = z[:, 0]
        logits = torch.full((len(state), self.vocab_size), -10.0)
        logits[:, self.resp] = 10.0 * (count - 0.5)
        logits[:, self.eos] = 10.0 * (0.5 - count)
        return logits


class ShiftCounter(nn.Module):
    """State = one-hot(count) over `slots` dims + a phase dim; demo shifts up, response shifts down."""

    def __init__(self, task: Task, slots: int = 32):
        super().__init__()
        self.demo, self.trig, self.resp, self.eos, self.bos = _token_sets(task)
        self.slots, self.vocab_size = slots, task.vocab_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def initial_state(self, batch_size):
        s = torch.zeros(batch_size, self.slots + 1)
        s[:, 0] = 1.0
        return s

    def step(self, tokens, state):
        onehot, phase = state[:, :-1], state[:, -1:]
        up = torch.roll(onehot, 1, dims=1)
        down = torch.roll(onehot, -1, dims=1)
        onehot = torch.where(self.demo[tokens][:, None], up, onehot)
        onehot = torch.where((tokens == self.resp)[:, None], down, onehot)
        phase = torch.where(((tokens == self.trig) | (tokens == self.resp))[:, None], torch.ones_like(phase), phase)
        state = torch.cat([onehot, phase], dim=1)
        return torch.where((tokens == self.bos)[:, None], self.initial_state(len(tokens)), state)

    def readout(self, state):
        at_zero = state[:, 0]                          # the count-0 slot
        logits = torch.full((len(state), self.vocab_size), -10.0)
        logits[:, self.resp] = 10.0 * (0.5 - at_zero)
        logits[:, self.eos] = 10.0 * (at_zero - 0.5)
        return logits


def summing_transformer(task: Task, big: float = 10.0):
    """A real `TransformerLM` (NPE, 2 layers, d = 6 + 2·vocab) with hand-set weights that solves the
    task by re-reading its context, the paper's summing solution: layer 1 is a no-op, so resid.1
    holds only each token's identity; layer 2 attends uniformly to the prefix and averages +1 per
    demo token, −1 per response and a trigger marker; the head says EOS once the average count is 0
    after the trigger. No position stores a running count.

    Every stream vector is mirrored ([a, −a]), so LayerNorm's mean is 0 and its scale nearly
    constant (set by the `big` pair), and the count's sign survives it."""
    from numvars import models
    from numvars.models import ModelConfig

    if (task.resp_id == task.demo_ids).any():
        raise ValueError("the summing network needs distinct demo and response tokens")
    V = task.vocab_size
    d = 6 + 2 * V
    model = models.build(ModelConfig(arch="transformer", vocab_size=V, d_model=d, pos="none", n_layers=2), seed=0)
    value = torch.zeros(V)
    value[torch.as_tensor(task.demo_ids)], value[task.resp_id] = 1.0, -1.0
    trigger = torch.zeros(V)
    trigger[task.vocab["T"]] = 1.0
    eye = torch.eye(V)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.blocks[0].ln1, model.blocks[0].ln2, model.blocks[1].ln1, model.blocks[1].ln2, model.ln_f):
            ln.weight.fill_(1.0)
        emb = torch.zeros(V, d)
        emb[:, 0], emb[:, 1] = big, -big
        emb[:, 6:6 + V], emb[:, 6 + V:] = eye, -eye
        model.embed.weight.copy_(emb)
        scale = float(torch.sqrt(((emb[0] - emb[0].mean()) ** 2).mean() + 1e-5))   # LayerNorm's divisor of e_tok
        attn = model.blocks[1].attn
        w_v = torch.zeros(d, d)                       # values from the one-hot part of LN(e_tok) = e_tok / scale
        w_v[2, 6:6 + V], w_v[3, 6:6 + V] = value * scale, -value * scale
        w_v[4, 6:6 + V], w_v[5, 6:6 + V] = trigger * scale, -trigger * scale
        attn.qkv.weight[2 * d:] = w_v                 # queries and keys stay 0: uniform causal attention
        attn.proj.weight.copy_(torch.eye(d))
        # head: hidden unit 0 = GELU(m' + 10) ≈ m' + 10, where m' is the normalised mean count
        first, last = model.head[0], model.head[3]
        first.weight[0, 2], first.bias[0] = 1.0, 10.0
        threshold = 0.5 / (2 * task.spec.max_count + 3) / (big / (d / 2) ** 0.5)     # half the smallest m'
        last.weight[task.resp_id, 0] = 1e4
        last.bias[:] = -1e6
        last.bias[task.resp_id], last.bias[task.vocab["EOS"]] = -1e4 * (10.0 + threshold), 0.0
    return model.eval()


class UpUpCounter(LineCounter):
    """State = Q·[demo_count, resp_count, phase, 0, ...]: two separate counters, +1 per demo token and
    +1 per response; EOS once the responses have caught up."""

    def step(self, tokens, state):
        z = self._unrotate(state).clone()
        z[:, 0] += self.demo[tokens].float()
        z[:, 1] += (tokens == self.resp).float()
        z[:, 2] = torch.where((tokens == self.trig) | (tokens == self.resp), torch.ones_like(z[:, 2]), z[:, 2])
        z = torch.where((tokens == self.bos)[:, None], torch.zeros_like(z), z)
        return self._rotate(z)

    def readout(self, state):
        z = self._unrotate(state)
        left = z[:, 0] - z[:, 1]
        logits = torch.full((len(state), self.vocab_size), -10.0)
        logits[:, self.resp] = 10.0 * (left - 0.5)
        logits[:, self.eos] = 10.0 * (0.5 - left)
        return logits


class SkewCounter(LineCounter):
    """State = Q·(count·a + phase·b) with a and b unit vectors at cosine `cos`: the count is read along the dual
    direction of a. A rotation swaps along orthogonal directions only, so it cannot move the count without
    moving the phase, which the readout needs (a demo token while it is 0); a general linear map can."""

    def __init__(self, task: Task, d: int = 6, seed: int = 2024, cos: float = 0.9):
        super().__init__(task, d, seed)
        self.first_demo = int(task.demo_ids[0])
        basis = torch.zeros(d, 2)
        basis[0, 0] = 1.0
        basis[0, 1], basis[1, 1] = cos, (1 - cos ** 2) ** 0.5
        self.register_buffer("basis", basis)                              # columns a, b
        self.register_buffer("dual", torch.linalg.pinv(basis))           # rows a*, b*

    def _read(self, state):
        z = (state @ self.q) @ self.dual.T                               # (B, 2): count, phase
        return z[:, 0], z[:, 1]

    def _write(self, count, phase):
        return (torch.stack([count, phase], 1) @ self.basis.T) @ self.q.T

    def step(self, tokens, state):
        count, phase = self._read(state)
        count = count + self.demo[tokens].float() - (tokens == self.resp).float()
        phase = phase + (tokens == self.trig).float()                      # the trigger adds 1: 0 → 1
        bos = tokens == self.bos
        return self._write(count.masked_fill(bos, 0.0), phase.masked_fill(bos, 0.0))

    def readout(self, state):
        """Responses and the EOS by the count when the phase is 1 (any other phase: neither); a demo token at 0."""
        count, phase = self._read(state)
        off = 30.0 * (phase - 1.0).abs()
        logits = torch.full((len(state), self.vocab_size), -10.0)
        logits[:, self.resp] = 10.0 * (count - 0.5) - off
        logits[:, self.eos] = 10.0 * (0.5 - count) - off
        logits[:, self.first_demo] = 20.0 * (0.5 - phase)
        return logits


class SkewUpUpCounter(UpUpCounter):
    """Two separate counters, as UpUpCounter, kept along unit directions a and b at cosine `cos` (the phase on a
    third, orthogonal one): State = Q·(demo_count·a + resp_count·b + phase·c). Both counters together are a
    rotation's to swap; either alone is not (an orthogonal swap of one drags the other along), while a general
    linear map swaps each."""

    def __init__(self, task: Task, d: int = 6, seed: int = 2024, cos: float = 0.9):
        super().__init__(task, d, seed)
        basis = torch.zeros(d, 3)
        basis[0, 0] = 1.0
        basis[0, 1], basis[1, 1] = cos, (1 - cos ** 2) ** 0.5
        basis[2, 2] = 1.0
        self.register_buffer("basis", basis)                              # columns a, b, c
        self.register_buffer("dual", torch.linalg.pinv(basis))

    def _unrotate(self, state):
        return (state @ self.q) @ self.dual.T                            # (B, 3): demo_count, resp_count, phase

    def _rotate(self, z):
        return (z @ self.basis.T) @ self.q.T
