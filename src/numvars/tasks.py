"""Numeric-equivalence tasks: see n demo tokens, a trigger, emit n responses and EOS.

A task variant is data (`TaskSpec`), not a subclass. Generation is vectorized with numpy and
seeded. Besides the tokens, every batch carries the *role* of each position (BOS, DEMO, VOID,
TRIGGER, RESP, EOS, PAD), so that programs (`numvars.programs`) read sequences without knowing
token names — Same-Object uses the token C in both phases, and only the role tells them apart.

Token ids: PAD=0, BOS=1, EOS=2, T=3, V=4, then the demo tokens (D0 D1 D2 | D | C), then the
response token R where it differs from the demo token. The vocabulary is the same whatever the
options, so a model trained with voids or without a trigger keeps the same ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import options
from .errors import NumvarsError

# Roles of positions; programs consume and emit these.
PAD, BOS, DEMO, VOID, TRIGGER, RESP, EOS = range(7)
ROLE_NAMES = ("PAD", "BOS", "DEMO", "VOID", "TRIGGER", "RESP", "EOS")

VARIANTS = {
    # name: (demo token names, response token name)
    "multi_object": (("D0", "D1", "D2"), "R"),
    "single_object": (("D",), "R"),
    "same_object": (("C",), "C"),
}
DEFAULT_HOLDOUTS = (4, 9, 14, 17)
MAX_COUNT = 250     # sequences are 2n + 3 tokens; longer ones make every batch and DAS cache huge


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task variant."""

    name: str = "multi_object"
    void_prob: float = 0.0
    bos: bool = True
    trigger: bool = True
    min_count: int = 1
    max_count: int = 20
    holdouts: tuple[int, ...] = DEFAULT_HOLDOUTS

    def __post_init__(self):
        options.canonicalize(self)
        object.__setattr__(self, "holdouts", tuple(sorted(set(self.holdouts))))
        if self.name not in VARIANTS:
            raise NumvarsError(f"unknown task {self.name!r}; choose one of {', '.join(VARIANTS)}")
        if not 0.0 <= self.void_prob < 1.0:
            raise NumvarsError(f"void_prob={self.void_prob} must be in [0, 1); e.g. void_prob=0.2")
        if not 1 <= self.min_count <= self.max_count:
            raise NumvarsError(f"need 1 <= min_count <= max_count, got {self.min_count}..{self.max_count}")
        options.check_range("max_count", self.max_count, 1, MAX_COUNT, "sequences are 2·max_count + 3 tokens long")
        outside = [n for n in self.holdouts if not self.min_count <= n <= self.max_count]
        if outside:
            raise NumvarsError(f"holdouts {', '.join(map(str, outside[:10]))} lie outside the counts "
                               f"{self.min_count}..{self.max_count}; hold out counts inside the range (e.g. "
                               f"holdouts={','.join(str(n) for n in self.holdouts if n not in outside) or ''}), or "
                               f"none (holdouts=)")
        if not self.trigger and self.name == "same_object":
            raise NumvarsError("same_object needs trigger=true: without T its demo and response are the same token")
        if not self.train_counts:
            raise NumvarsError("every count in min_count..max_count is held out; shorten holdouts")

    @property
    def train_counts(self) -> tuple[int, ...]:
        return tuple(n for n in range(self.min_count, self.max_count + 1) if n not in self.holdouts)


@dataclass
class Batch:
    """A batch of sequences. All tensors are (N, L) unless noted; L is the longest sequence."""

    tokens: torch.Tensor      # LongTensor, PAD-filled
    task_mask: torch.Tensor   # BoolTensor, True at response tokens and EOS that are predictable
    counts: torch.Tensor      # LongTensor (N,): the target count n
    roles: torch.Tensor       # LongTensor, the role of each position (PAD, BOS, DEMO, ...)
    lengths: torch.Tensor     # LongTensor (N,): number of non-PAD tokens

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, idx) -> "Batch":
        return Batch(*(getattr(self, f)[idx] for f in ("tokens", "task_mask", "counts", "roles", "lengths")))


@dataclass
class Task:
    """A task variant with its vocabulary and a vectorized, seeded sampler."""

    spec: TaskSpec
    vocab: dict[str, int] = field(init=False)

    def __post_init__(self):
        demo, resp = VARIANTS[self.spec.name]
        names = ["PAD", "BOS", "EOS", "T", "V", *demo] + ([resp] if resp not in demo else [])
        self.vocab = {n: i for i, n in enumerate(names)}
        self.demo_ids = np.array([self.vocab[n] for n in demo])
        self.resp_id = self.vocab[resp]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def role_tokens(self, roles: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Token ids for roles (as a program emits them). With a generator, DEMO roles get a random
        demo token; without one, the first demo token (no global random state is touched)."""
        table = torch.tensor([self.vocab["PAD"], self.vocab["BOS"], int(self.demo_ids[0]), self.vocab["V"],
                              self.vocab["T"], self.resp_id, self.vocab["EOS"]])
        out = table[roles]
        if generator is not None and len(self.demo_ids) > 1:
            pick = torch.randint(len(self.demo_ids), roles.shape, generator=generator)
            out = torch.where(roles == DEMO, torch.as_tensor(self.demo_ids)[pick], out)
        return out

    def sample(self, n: int, seed: int = 0, counts=None) -> Batch:
        """n sequences. counts=None draws from the training counts (held-out counts excluded);
        an explicit sequence of counts is repeated in order to fill n (e.g. 300 and 1..20 → 15 each)."""
        if n < 1:
            raise NumvarsError(f"cannot sample {n} sequences; ask for at least 1")
        rng = np.random.default_rng(seed)
        if counts is None:
            counts = rng.choice(np.array(self.spec.train_counts), size=n)
        else:
            counts = np.asarray(list(counts), dtype=np.int64)
            if counts.size == 0:                       # np.resize would fill n rows with count 0
                raise NumvarsError("counts is empty; give at least one count, e.g. counts=range(1, 21)")
            counts = np.resize(counts, n)
            if counts.min() < 1:
                raise NumvarsError("counts must be >= 1")
        return self._build(counts.astype(np.int64), rng)

    def _build(self, counts: np.ndarray, rng: np.random.Generator) -> Batch:
        s = self.spec
        n_rows = len(counts)
        voids = rng.negative_binomial(counts, 1.0 - s.void_prob) if s.void_prob > 0 else np.zeros_like(counts)
        demo_len = counts + voids                      # the last demo position is never void
        start = int(s.bos)
        end_demo = start + demo_len                    # (N,) first position after the demo phase
        resp_start = end_demo + int(s.trigger)
        eos_pos = resp_start + counts
        L = int(eos_pos.max()) + 1
        pos = np.arange(L)[None, :]                    # (1, L)

        roles = np.full((n_rows, L), PAD, dtype=np.int64)
        in_demo = (pos >= start) & (pos < end_demo[:, None])
        roles[in_demo] = DEMO
        if s.void_prob > 0:
            # place `voids` voids uniformly among the first demo_len - 1 demo positions
            keys = rng.random((n_rows, L))
            keys[~(in_demo & (pos < end_demo[:, None] - 1))] = np.inf
            rank = np.argsort(np.argsort(keys, axis=1), axis=1)
            roles[(rank < voids[:, None]) & in_demo] = VOID
        if s.bos:
            roles[:, 0] = BOS
        if s.trigger:
            roles[np.arange(n_rows), end_demo] = TRIGGER
        roles[(pos >= resp_start[:, None]) & (pos < eos_pos[:, None])] = RESP
        roles[np.arange(n_rows), eos_pos] = EOS

        roles_t = torch.from_numpy(roles)
        demo_pick = self.demo_ids[rng.integers(len(self.demo_ids), size=(n_rows, L))]
        tokens = self.role_tokens(roles_t).numpy()
        tokens = np.where(roles == DEMO, demo_pick, tokens)
        mask = (roles == RESP) | (roles == EOS)
        if not s.trigger:                              # the first response ends the demo: unpredictable
            mask[np.arange(n_rows), resp_start] = False
        return Batch(tokens=torch.from_numpy(tokens), task_mask=torch.from_numpy(mask), counts=torch.from_numpy(counts),
                     roles=roles_t, lengths=torch.from_numpy(eos_pos + 1))


def get_task(name: str = "multi_object", **options) -> Task:
    """A task by name ("multi_object", "single_object", "same_object") with TaskSpec options."""
    known = set(TaskSpec.__dataclass_fields__) - {"name"}
    unknown = set(options) - known
    if unknown:
        raise NumvarsError(f"unknown task option {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}")
    return Task(TaskSpec(name=name, **options))

