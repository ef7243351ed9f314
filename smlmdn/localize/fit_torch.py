"""Torch port of :func:`smlmdn.localize.fit.fit_spots`: the same Poisson MLE fit, vectorised over spots.

Same model, camera-noise transform, start values, Levenberg-Marquardt / Fisher-scoring update,
step bounds, convergence rules, status codes, CRLB, log-likelihood and llr as the numba fitter (see
:mod:`smlmdn.localize.fit` for the physics). Instead of one spot per thread, every iteration works on
all still-active spots at once as batched tensor operations, so the same code runs on a CPU or a
CUDA device. All arithmetic is float64 (also on CUDA) so results match the numba fitter to
round-off; spots are processed in chunks of ``chunk`` to bound memory.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .fit import (
    _INV_SQRT2PI,
    _SQRT2,
    CONVERGED,
    DEFAULT_MAX_ITER,
    DEFAULT_TOL_XY,
    DIVERGE_BOXES,
    DIVERGED,
    LL_REL_TOL,
    LM_LAMBDA_DOWN,
    LM_LAMBDA_MAX,
    LM_LAMBDA_MIN,
    LM_LAMBDA_START,
    LM_LAMBDA_UP,
    MAX_ITER,
    MAX_POSITION_STEP_PX,
    MAX_SIGMA_BOXES,
    MIN_BG,
    MIN_PHOTONS,
    MIN_SIGMA_PX,
    MIN_SIGMA_STEP_FRACTION,
    MIN_START_BG,
    MIN_START_PHOTONS,
    MIN_STEP_FRACTION,
    OUTSIDE,
    FitResult,
)


def _psf_1d(center: torch.Tensor, sigma: torch.Tensor, nb: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrated unit Gaussian over pixels [k, k+1) (k, nb) and its derivatives by centre and sigma."""
    k = torch.arange(nb, dtype=center.dtype, device=center.device)
    s = sigma[:, None]
    inv = 1.0 / (_SQRT2 * s)
    norm = _INV_SQRT2PI / s
    half_inv_var = 0.5 / (s * s)
    a = k - center[:, None]
    c = k + 1.0 - center[:, None]
    ea = torch.exp(-a * a * half_inv_var)
    ec = torch.exp(-c * c * half_inv_var)
    e = 0.5 * (torch.erf(c * inv) - torch.erf(a * inv))
    de_dc = norm * (ea - ec)
    de_ds = norm / s * (a * ea - c * ec)
    return e, de_dc, de_ds


def _model(
    theta: torch.Tensor, nb: int, npar: int, shift: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute the transformed model ``m`` (k, B, B) and derivatives ``dm`` (k, npar, B, B) at ``theta`` (k, 5).

    ``shift`` (k, B, B): camera shift ``r^2`` plus the known photons of neighbouring molecules.
    """
    x, y, n, b, s = theta.unbind(1)
    ex, dex, dsx = _psf_1d(x, s, nb)
    ey, dey, dsy = _psf_1d(y, s, nb)
    n3 = n[:, None, None]
    p = ey[:, :, None] * ex[:, None, :]  # row i = y, column j = x
    m = scale * (n3 * p + b[:, None, None] + shift)
    parts = [
        scale * n3 * (ey[:, :, None] * dex[:, None, :]),
        scale * n3 * (dey[:, :, None] * ex[:, None, :]),
        scale * p,
        torch.full_like(p, scale),
    ]
    if npar == 5:
        parts.append(scale * n3 * (ey[:, :, None] * dsx[:, None, :] + dsy[:, :, None] * ex[:, None, :]))
    return m, torch.stack(parts, dim=1)


def _loglik(d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Poisson log-likelihood without the data-only term, sum(d log m - m); -inf where any m <= 0."""
    bad = (m <= 0.0).any(dim=(1, 2))
    total = (d * torch.log(m) - m).sum(dim=(1, 2))
    return torch.where(bad, torch.full_like(total, -math.inf), total)


def _fisher(dm: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Compute the expected Fisher information (k, npar, npar) = sum over pixels of dm_k dm_l / m."""
    return torch.einsum("kpij,kqij->kpq", dm / m[:, None], dm)


def _start(y: torch.Tensor, sigma0: float) -> torch.Tensor:
    """Start values (k, 5): bg = median of the box perimeter (>= MIN_START_BG), centroid and sum of the excess."""
    k, nb, _ = y.shape
    per = torch.cat([y[:, 0, :], y[:, nb - 1, :], y[:, 1 : nb - 1, 0], y[:, 1 : nb - 1, nb - 1]], dim=1)
    srt = torch.sort(per, dim=1).values
    h = per.shape[1]
    b0 = srt[:, h // 2] if h % 2 else 0.5 * (srt[:, h // 2 - 1] + srt[:, h // 2])
    b0 = torch.where(b0 < MIN_START_BG, torch.full_like(b0, MIN_START_BG), b0)
    w = y - b0[:, None, None]
    w = torch.where(w > 0.0, w, torch.zeros_like(w))
    tot = w.sum(dim=(1, 2))
    c = torch.arange(nb, dtype=y.dtype, device=y.device) + 0.5
    sx = (w * c[None, None, :]).sum(dim=(1, 2))
    sy = (w * c[None, :, None]).sum(dim=(1, 2))
    pos = tot > 0.0
    safe = torch.where(pos, tot, torch.ones_like(tot))
    theta = torch.empty((k, 5), dtype=y.dtype, device=y.device)
    theta[:, 0] = torch.where(pos, sx / safe, torch.full_like(tot, 0.5 * nb))
    theta[:, 1] = torch.where(pos, sy / safe, torch.full_like(tot, 0.5 * nb))
    theta[:, 2] = torch.clamp(tot, min=MIN_START_PHOTONS)
    theta[:, 3] = b0
    theta[:, 4] = sigma0
    return theta


def _trial(th: torch.Tensor, st: torch.Tensor, npar: int, nb: int) -> torch.Tensor:
    """Bounded LM step: position steps clipped to +-1 px, photons/bg/sigma kept positive as in fit.py."""
    trial = th.clone()
    trial[:, 0:2] = th[:, 0:2] + st[:, 0:2].clamp(-MAX_POSITION_STEP_PX, MAX_POSITION_STEP_PX)
    trial[:, 2] = torch.maximum(th[:, 2] + st[:, 2], MIN_STEP_FRACTION * th[:, 2]).clamp(min=MIN_PHOTONS)
    trial[:, 3] = torch.maximum(th[:, 3] + st[:, 3], MIN_STEP_FRACTION * th[:, 3]).clamp(min=MIN_BG)
    if npar == 5:
        trial[:, 4] = (
            torch.maximum(th[:, 4] + st[:, 4], MIN_SIGMA_STEP_FRACTION * th[:, 4])
            .clamp(min=MIN_SIGMA_PX)
            .clamp(max=MAX_SIGMA_BOXES * nb)
        )
    return trial


def _fit_chunk(
    y: torch.Tensor, off: torch.Tensor, sigma0: float, npar: int, r2: float, scale: float, max_iter: int, tol_xy: float
):
    """Fit one chunk of spots ``y`` (k, B, B) float64 photons; return torch tensors on y.device.

    The known neighbour photons are ``off`` (k, B, B).
    """
    n, nb, _ = y.shape
    dev, dt = y.device, y.dtype
    v = y + r2
    d_all = scale * torch.where(v > 0.0, v, torch.zeros_like(v))
    shift_all = off + r2
    theta = _start(y - off, sigma0)
    m_all, dm_all = _model(theta, nb, npar, shift_all, scale)
    ll_all = _loglik(d_all, m_all)
    lam_all = torch.full((n,), LM_LAMBDA_START, dtype=dt, device=dev)
    status = torch.full((n,), MAX_ITER, dtype=torch.int8, device=dev)
    iters = torch.zeros(n, dtype=torch.int32, device=dev)
    active = torch.arange(n, device=dev)
    diag = torch.arange(npar, device=dev)
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        a = active
        iters[a] += 1
        th, m, dm, d, ll, lam, sh = theta[a], m_all[a], dm_all[a], d_all[a], ll_all[a], lam_all[a], shift_all[a]
        fi = _fisher(dm, m)
        g = torch.einsum("kpij,kij->kp", dm, d / m - 1.0)
        k = a.numel()
        improved = torch.zeros(k, dtype=torch.bool, device=dev)
        small = torch.zeros(k, dtype=torch.bool, device=dev)
        pend = torch.arange(k, device=dev)
        # damping loop: every spot retries with more damping until a step raises its likelihood or lam >= LM_LAMBDA_MAX
        while True:
            pend = pend[lam[pend] < LM_LAMBDA_MAX]
            if pend.numel() == 0:
                break
            amat = fi[pend].clone()
            amat[:, diag, diag] = amat[:, diag, diag] * (1.0 + lam[pend, None])
            step, info = torch.linalg.solve_ex(amat, g[pend])
            solved = (info == 0) & torch.isfinite(step).all(dim=1)
            fail = pend[~solved]
            lam[fail] *= LM_LAMBDA_UP
            tp = pend[solved]
            st = torch.zeros((tp.numel(), 5), dtype=dt, device=dev)
            st[:, :npar] = step[solved]
            th_p = th[tp]
            trial = _trial(th_p, st, npar, nb)
            m_t, dm_t = _model(trial, nb, npar, sh[tp], scale)
            ll_t = _loglik(d[tp], m_t)
            ll_p = ll[tp]
            acc = ll_t >= ll_p
            ai = tp[acc]
            small[ai] = (
                ((trial[acc, 0] - th_p[acc, 0]).abs() < tol_xy)
                & ((trial[acc, 1] - th_p[acc, 1]).abs() < tol_xy)
                & ((ll_t[acc] - ll_p[acc]) < LL_REL_TOL * (1.0 + ll_p[acc].abs()))
            )
            th[ai] = trial[acc]
            ll[ai] = ll_t[acc]
            lam[ai] = torch.clamp(lam[ai] * LM_LAMBDA_DOWN, min=LM_LAMBDA_MIN)
            m[ai] = m_t[acc]
            dm[ai] = dm_t[acc]
            improved[ai] = True
            rej = tp[~acc]
            lam[rej] *= LM_LAMBDA_UP
            pend = torch.cat([fail, rej])
        theta[a], m_all[a], dm_all[a], ll_all[a], lam_all[a] = th, m, dm, ll, lam
        # no improving step: at the maximum (model cache already holds theta); or a small accepted step
        conv = ~improved | small
        div = ~conv & (
            (th[:, 0].abs() > DIVERGE_BOXES * nb) | (th[:, 1].abs() > DIVERGE_BOXES * nb) | ~torch.isfinite(ll)
        )
        status[a[conv]] = CONVERGED
        status[a[div]] = DIVERGED
        active = a[~(conv | div)]
    # --- outputs at the estimate (the model cache holds m, dm at theta)
    fi = _fisher(dm_all, m_all)
    inv, info = torch.linalg.inv_ex(fi)
    ok = (info == 0) & torch.isfinite(inv).all(dim=(1, 2))
    var = torch.diagonal(inv, dim1=1, dim2=2)
    crlb = torch.full((n, 5), math.nan, dtype=dt, device=dev)
    crlb[:, :npar] = torch.where(var > 0.0, torch.sqrt(var.clamp(min=0.0)), torch.full_like(var, math.nan))
    crlb[~ok] = math.nan
    d, m = d_all, m_all
    ll_full = (d * torch.log(m) - m - torch.lgamma(d + 1.0)).sum(dim=(1, 2))
    pos = d > 0.0
    dlog = torch.where(pos, d * torch.log(torch.where(pos, d, torch.ones_like(d)) / m), torch.zeros_like(d))
    llr = 2.0 * (m - d + dlog).sum(dim=(1, 2))
    bad = ~ok | ~torch.isfinite(ll_full)
    outside = (theta[:, 0] < 0.0) | (theta[:, 0] > nb) | (theta[:, 1] < 0.0) | (theta[:, 1] > nb)
    status = torch.where(bad, torch.full_like(status, DIVERGED), status)
    status = torch.where(~bad & (status == CONVERGED) & outside, torch.full_like(status, OUTSIDE), status)
    return theta, crlb, ll_full, llr, iters, status


def fit_spots_torch(
    spots: np.ndarray | torch.Tensor,
    sigma_px: float,
    *,
    fit_sigma: bool = False,
    read_noise_photons: float = 0.0,
    excess_noise: float = 1.0,
    device: str | torch.device = "cpu",
    max_iter: int = DEFAULT_MAX_ITER,
    tol_xy: float = DEFAULT_TOL_XY,
    chunk: int = 262144,
    offset: np.ndarray | None = None,
) -> FitResult:
    """Torch equivalent of :func:`smlmdn.localize.fit.fit_spots` (same arguments, same :class:`FitResult`).

    ``spots`` (n, B, B) detected photons (numpy or torch); ``sigma_px`` PSF sigma in pixels (fixed, or
    the start value when ``fit_sigma``); ``read_noise_photons`` Gaussian read noise in photons rms;
    ``excess_noise`` 2 for an EMCCD, else 1; ``offset`` (n, B, B) known neighbour photons; ``device`` "cpu", "cuda" or a torch.device. Spots are
    fitted ``chunk`` at a time (memory ~ 0.5 kB x B*B per spot in a chunk). Results are numpy arrays.
    """
    dev = torch.device(device)
    if isinstance(spots, torch.Tensor):
        y = spots.detach().to(device=dev, dtype=torch.float64)
    else:
        y = torch.as_tensor(np.ascontiguousarray(spots, dtype=np.float64)).to(dev)
    if y.ndim != 3 or y.shape[1] != y.shape[2]:
        raise ValueError(f"spots must be (n, B, B), got {tuple(y.shape)}")
    n = y.shape[0]
    off = (
        torch.zeros_like(y)
        if offset is None
        else torch.as_tensor(np.asarray(offset, dtype=np.float64)).to(dev).expand_as(y)
    )
    npar = 5 if fit_sigma else 4
    r2 = float(read_noise_photons) ** 2
    scale = 1.0 / float(excess_noise)
    step = max(int(chunk), 1)
    outs: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for start in range(0, n, step):
            part = y[start : start + step]
            outs.append(
                _fit_chunk(
                    part, off[start : start + step], float(sigma_px), npar, r2, scale, int(max_iter), float(tol_xy)
                )
            )
    if not outs:
        empty = np.empty((0, 5))
        return FitResult(empty, empty.copy(), np.empty(0), np.empty(0), np.empty(0, np.int32), np.empty(0, np.int8))
    cols = [torch.cat([o[i] for o in outs]).cpu().numpy() for i in range(6)]
    return FitResult(cols[0], cols[1], cols[2], cols[3], cols[4].astype(np.int32), cols[5].astype(np.int8))
