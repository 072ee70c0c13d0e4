import pytest
import torch

from models.scan import linear_scan, linear_scan_ref


@pytest.mark.parametrize("L", [1, 2, 7, 64, 257])
@pytest.mark.parametrize("complex_", [False, True])
def test_parallel_scan_matches_loop(L, complex_):
    g = torch.Generator().manual_seed(L)
    shape = (3, L, 4, 5)
    dtype = torch.complex128 if complex_ else torch.float64
    a = (torch.rand(shape, generator=g, dtype=torch.float64) * 0.98).to(dtype)
    if complex_:
        a = a * torch.exp(1j * torch.rand(shape, generator=g, dtype=torch.float64))
    b = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    h0 = torch.randn(3, 4, 5, generator=g, dtype=torch.float64).to(dtype)
    for init in (None, h0):
        par, ref = linear_scan(a, b, init), linear_scan_ref(a, b, init)
        assert torch.allclose(par, ref, atol=1e-12, rtol=1e-12)
        assert torch.allclose(par[:, -1], ref[:, -1], atol=1e-12)  # final state


def test_broadcast_a_and_gradcheck():
    a = torch.rand(1, 5, 3, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(linear_scan(a, b), linear_scan_ref(a, b), atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: linear_scan(a, b), (a, b))


@pytest.mark.parametrize("L", [1, 5, 64, 257])
def test_time_invariant_fast_path(L):
    g = torch.Generator().manual_seed(L)
    a = torch.rand(1, 1, 4, dtype=torch.float64, generator=g) * torch.exp(1j * torch.rand(1, 1, 4, dtype=torch.float64))
    b = torch.randn(2, L, 4, dtype=torch.complex128, generator=g)
    h0 = torch.randn(2, 4, dtype=torch.complex128, generator=g)
    for init in (None, h0):
        assert torch.allclose(linear_scan(a, b, init), linear_scan_ref(a, b, init), atol=1e-12)
