"""Hand-built recurrent networks that follow the step protocol (SPEC §9), with known answers.

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
