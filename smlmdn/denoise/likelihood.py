"""Noise models, marginal likelihoods and posterior estimates of the blind-spot denoiser.

All functions work element-wise on torch tensors of *model counts* ``z`` (see
:func:`to_model_counts`), the quantity treated as Poisson:

* Gamma-Poisson (default): prior ``lam ~ Gamma(a, b)`` from the blind-spot network, parameterised by
  its mean ``m = a / b`` and shape ``a`` (so ``b = a / m``); noise ``z | lam ~ Poisson(lam)``.
  The marginal is negative binomial,
  ``log p(z) = lgamma(z + a) - lgamma(a) - lgamma(z + 1) + a log(a / (a + m)) + z log(m / (a + m))``
  (valid for real ``z >= 0``), and the posterior is ``Gamma(a + z, b + 1)``.
  ``lgamma(z + a) - lgamma(a)`` cancels catastrophically in float32 when ``a`` is large (flat
  background gives ``a`` ~ 1e3-1e5), so the loss is always evaluated in float64.
* Gaussian (Laine et al. 2019's approximation, kept for comparison): prior ``N(mu, s^2)``, noise
  variance ``lam`` approximated by ``max(mu, floor)``; marginal ``N(mu, s^2 + mu)``; posterior mean
  ``(z s^2 + mu v) / (s^2 + v)`` with ``v = max(mu, floor)``.

Cameras are not pure Poisson. A detected-photon value ``y`` (photoelectrons) has mean ``lam`` and
variance ``F lam + r^2`` (``F`` the excess-noise factor, 2 for an EMCCD; ``r`` the read noise in
photoelectrons). The shifted and scaled ``z = (y + r^2 / F) / F`` has equal mean and variance
``(lam + r^2 / F) / F`` and is modelled as Poisson; for sCMOS (``F = 1``) this is the standard
``y + r^2 ~ Poisson(lam + r^2)`` and for an EMCCD (``r`` ~ 0 after the gain) ``y / 2 ~ Poisson(lam / 2)``.
Estimates of ``z`` are mapped back with :func:`from_model_counts` (``lam = F z - r^2 / F``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

HEADS = ("gamma-poisson", "gaussian")
ESTIMATES = ("mean", "map", "std", "prior")


def count_transform(excess_noise: float, read_noise_photons: float) -> tuple[float, float]:
    """``(shift, factor)`` with ``z = (y + shift) / factor``: ``shift = r^2 / F``, ``factor = F``."""
    factor = float(excess_noise)
    return float(read_noise_photons) ** 2 / factor, factor


def to_model_counts(photons: np.ndarray, shift: float, factor: float) -> np.ndarray:
    """Convert detected photons to model counts ``z = max(y + shift, 0) / factor`` (float32, same shape)."""
    return (np.maximum(np.asarray(photons, dtype=np.float32) + np.float32(shift), 0) / np.float32(factor)).astype(
        np.float32
    )


def from_model_counts(z: np.ndarray, shift: float, factor: float, kind: str = "value") -> np.ndarray:
    """Model counts -> photons: ``F z - shift`` for values, ``F z`` for spreads (``kind='std'``)."""
    z = np.asarray(z, dtype=np.float32)
    if kind == "std":
        return (z * np.float32(factor)).astype(np.float32)
    return (z * np.float32(factor) - np.float32(shift)).astype(np.float32)


# ----------------------------------------------------------------------------- Gamma-Poisson


def nb_nll(z: torch.Tensor, m: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Negative log of the negative-binomial marginal ``p(z | m, a)``, element-wise, float64.

    ``z`` >= 0 counts (real values allowed), ``m`` > 0 prior mean, ``a`` > 0 prior shape.
    Equals ``-scipy.stats.nbinom.logpmf(z, n=a, p=b / (b + 1))`` with ``b = a / m`` for integer ``z``
    and tends to the Poisson NLL ``m - z log m + lgamma(z + 1)`` as ``a -> inf``.
    """
    z = z.double()
    m = m.double()
    a = a.double()
    log_am = torch.log(a + m)
    # a * log(a / (a + m)) = -a * log1p(m / a): stable for large a (tends to -m).
    logp = (
        torch.lgamma(z + a)
        - torch.lgamma(a)
        - torch.lgamma(z + 1)
        - a * torch.log1p(m / a)
        + z * (torch.log(m) - log_am)
    )
    return -logp


def gamma_posterior(z: torch.Tensor, m: torch.Tensor, a: torch.Tensor) -> dict[str, torch.Tensor]:
    """Posterior ``Gamma(a + z, b + 1)`` summaries (``b = a / m``): mean, MAP, std and prior mean ``m``."""
    z = z.double()
    m = m.double()
    a = a.double()
    rate = a / m + 1.0
    return {
        "mean": (a + z) / rate,
        "map": torch.clamp(a + z - 1.0, min=0.0) / rate,
        "std": torch.sqrt(a + z) / rate,
        "prior": m,
    }


# ---------------------------------------------------------------------------------- Gaussian

GAUSS_VAR_FLOOR = 1e-2


def gaussian_nll(z: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """NLL of ``z ~ N(mu, s^2 + v)`` with Poisson noise variance ``v = max(mu, floor)`` (float64)."""
    z = z.double()
    mu = mu.double()
    s = s.double()
    var = s**2 + torch.clamp(mu, min=GAUSS_VAR_FLOOR)
    return 0.5 * (torch.log(2 * math.pi * var) + (z - mu) ** 2 / var)


def gaussian_posterior(z: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
    """Laine's Gaussian posterior: mean (= MAP) ``(z s^2 + mu v) / (s^2 + v)``, std ``sqrt(s^2 v / (s^2 + v))``."""
    z = z.double()
    mu = mu.double()
    s2 = s.double() ** 2
    v = torch.clamp(mu, min=GAUSS_VAR_FLOOR)
    mean = (z * s2 + mu * v) / (s2 + v)
    return {"mean": mean, "map": mean, "std": torch.sqrt(s2 * v / (s2 + v)), "prior": mu}


def nll(head: str, z: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
    """Per-pixel NLL for ``head``; ``(p0, p1)`` = ``(m, a)`` for gamma-poisson, ``(mu, s)`` for gaussian."""
    if head == "gamma-poisson":
        return nb_nll(z, p0, p1)
    return gaussian_nll(z, p0, p1)


def posterior(head: str, z: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> dict[str, torch.Tensor]:
    """Posterior summaries (in model counts) for ``head``; keys ``mean, map, std, prior``."""
    if head == "gamma-poisson":
        return gamma_posterior(z, p0, p1)
    return gaussian_posterior(z, p0, p1)
