"""The loss is the exact negative-binomial marginal; posterior formulas match numeric integration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from smlmdn.denoise import likelihood as L


def test_nb_nll_equals_scipy_nbinom_on_integer_counts():
    y = np.arange(0, 60, dtype=np.float64)
    for m, a in [(0.3, 0.05), (5.0, 2.0), (30.0, 1e3), (30.0, 1e5), (200.0, 7.5)]:
        b = a / m
        expected = -stats.nbinom.logpmf(y, n=a, p=b / (b + 1))
        got = L.nb_nll(
            torch.tensor(y), torch.full_like(torch.tensor(y), m), torch.full_like(torch.tensor(y), a)
        ).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_nb_nll_is_float64_even_for_float32_inputs_and_tends_to_poisson():
    y = torch.arange(20, 41, dtype=torch.float32)
    m = torch.full_like(y, 30.0)
    poisson = -stats.poisson.logpmf(y.double().numpy(), 30.0)
    prev = None
    for a in (1e2, 1e3, 1e4, 1e5, 1e6):  # the network bounds a at 1e5
        got = L.nb_nll(y, m, torch.full_like(y, a))
        assert got.dtype == torch.float64
        err = np.abs(got.numpy() - poisson).max()
        if prev is not None:
            assert err < prev  # converges as a grows
        prev = err
    assert prev < 1e-4
    # the float32 evaluation of the same formula is off by more than the whole NB-vs-Poisson gap
    a = torch.full_like(y, 1e5)
    f32 = torch.lgamma(y + a) - torch.lgamma(a)
    assert (f32.double() - (torch.lgamma(y.double() + 1e5) - torch.lgamma(a.double()))).abs().max() > 1e-3


def test_nb_nll_real_valued_counts_are_smooth():
    y = torch.tensor([2.0, 2.5, 3.0], dtype=torch.float64)
    v = L.nb_nll(y, torch.full_like(y, 3.0), torch.full_like(y, 4.0)).numpy()
    assert np.all(np.isfinite(v)) and min(v[0], v[2]) - 0.5 < v[1] < max(v[0], v[2]) + 0.5


@pytest.mark.parametrize("y,m,a", [(0, 2.0, 1.5), (4, 3.0, 0.7), (17, 10.0, 25.0), (2, 8.0, 300.0)])
def test_gamma_posterior_matches_numeric_integration(y, m, a):
    b = a / m

    # unnormalised posterior density of lam: Poisson(y | lam) Gamma(lam | a, b)
    def dens(lam):
        return np.exp(
            y * np.log(lam)
            - lam
            - special.gammaln(y + 1)
            + a * np.log(b)
            - special.gammaln(a)
            + (a - 1) * np.log(lam)
            - b * lam
        )

    hi = (a + y) / (b + 1) + 40 * np.sqrt(a + y) / (b + 1) + 10
    pts = [(a + y) / (b + 1)]
    z0 = integrate.quad(dens, 0, hi, points=pts, limit=200)[0]
    z1 = integrate.quad(lambda x: x * dens(x), 0, hi, points=pts, limit=200)[0]
    z2 = integrate.quad(lambda x: x * x * dens(x), 0, hi, points=pts, limit=200)[0]
    mean, var = z1 / z0, z2 / z0 - (z1 / z0) ** 2
    grid = np.linspace(1e-9, hi, 200001)
    mode = grid[np.argmax(dens(grid))]
    t = lambda v: torch.tensor([float(v)], dtype=torch.float64)  # noqa: E731
    post = L.gamma_posterior(t(y), t(m), t(a))
    assert post["mean"].item() == pytest.approx(mean, rel=1e-6)
    assert post["std"].item() == pytest.approx(np.sqrt(var), rel=1e-5)
    assert post["map"].item() == pytest.approx(mode, abs=2 * hi / 200000 + 1e-9)
    assert post["prior"].item() == m
    # the marginal normaliser is the NB pmf
    assert -np.log(z0) == pytest.approx(L.nb_nll(t(y), t(m), t(a)).item(), rel=1e-6)


def test_gaussian_head_posterior_and_nll():
    z, mu, s = torch.tensor([12.0]), torch.tensor([10.0]), torch.tensor([2.0])
    post = L.gaussian_posterior(z, mu, s)
    assert post["mean"].item() == pytest.approx((12 * 4 + 10 * 10) / 14)
    assert post["std"].item() == pytest.approx(np.sqrt(4 * 10 / 14))
    assert L.gaussian_nll(z, mu, s).item() == pytest.approx(-stats.norm.logpdf(12, 10, np.sqrt(14)))


def test_count_transform_sCMOS_and_EMCCD():
    shift, factor = L.count_transform(1.0, 2.0)
    assert (shift, factor) == (4.0, 1.0)  # y + r^2 ~ Poisson(lam + r^2)
    shift, factor = L.count_transform(2.0, 0.0)
    assert (shift, factor) == (0.0, 2.0)  # y / 2 ~ Poisson(lam / 2)
    y = np.array([-10.0, 0.0, 5.0], np.float32)
    z = L.to_model_counts(y, 4.0, 1.0)
    assert z.tolist() == [0.0, 4.0, 9.0]  # clipped at 0
    assert L.from_model_counts(z, 4.0, 1.0).tolist() == [-4.0, 0.0, 5.0]
    # simulated EMCCD-like data: z has mean == variance
    rng = np.random.default_rng(0)
    lam = 40.0
    y = rng.gamma(rng.poisson(lam, 200000) + 1e-12, 1.0)  # gain-register output / gain
    z = L.to_model_counts(y, *L.count_transform(2.0, 0.0))
    assert z.var() / z.mean() == pytest.approx(1.0, rel=0.03)
