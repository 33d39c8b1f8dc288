"""The probe start of DAS on states that carry nothing: a constant site, one sample, none."""
import torch

from numvars.align.probe import probe_basis, probe_directions


def orthonormal(m: torch.Tensor) -> bool:
    return torch.allclose(m.T.double() @ m.double(), torch.eye(m.shape[1], dtype=torch.double), atol=1e-6)


def test_constant_states_give_an_orthonormal_start_instead_of_a_singular_solve():
    d, n = 6, 40
    states = torch.ones(n, d)                          # the same state for every pair
    values = torch.arange(n) % 5
    assert torch.isfinite(probe_directions(states, values, 2)).all()
    basis = probe_basis(states, values, states, values, torch.zeros(n, dtype=torch.long), 1, 2)
    assert basis.shape == (d, d) and orthonormal(basis)


def test_a_variable_without_samples_is_filled_from_the_other_directions():
    d, n = 5, 30
    g = torch.Generator().manual_seed(0)
    states, values = torch.randn(n, d, generator=g), torch.arange(n) % 4
    which = torch.zeros(n, dtype=torch.long)           # every row belongs to variable 0; variable 1 has none
    basis = probe_basis(states, values, states, values, which, 2, 2)
    assert basis.shape == (d, d) and orthonormal(basis)
    assert probe_directions(states[:1], values[:1], 2).shape == (d, 0)


def test_the_probe_finds_the_direction_that_carries_the_value():
    d, n = 8, 400
    g = torch.Generator().manual_seed(1)
    values = torch.randint(0, 10, (n,), generator=g)
    states = 0.01 * torch.randn(n, d, generator=g)
    states[:, 3] += values.float()                     # the value lies along axis 3
    first = probe_directions(states, values, 1)[:, 0]
    assert first.abs().argmax().item() == 3 and first.abs().max() > 0.99
