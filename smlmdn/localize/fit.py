"""Batched Poisson maximum-likelihood fit of an integrated 2D Gaussian PSF, with CRLB per spot.

Coordinates inside a box of ``B x B`` pixels follow the project convention: pixel ``(0, 0)``
covers ``[0, 1) x [0, 1)`` and its centre is at ``0.5`` (as :func:`smlmdn.psf.integrated_gaussian`).
The model for the expected detected photons in box pixel ``(i, j)`` (row ``i`` = y, column ``j`` = x)
is ``mu_ij = N * Ex_j(x, s) * Ey_i(y, s) + b`` where ``Ex_j`` is the integral of a unit 1D Gaussian
over ``[j, j+1)``; ``N`` is in photons (photoelectrons), ``b`` in photons per pixel, ``s`` in pixels.

Molecules next to the spot whose photons are already known (from an earlier fit, see
:mod:`smlmdn.localize.pipeline`'s residual pass) enter as a fixed per-pixel ``offset`` ``o_ij``:
``mu_ij = N Ex_j Ey_i + b + o_ij`` (DAOSTORM-style multi-emitter fitting, Holden et al. 2011, Nat.
Methods 8:279, with the neighbours held fixed).

Camera noise beyond Poisson is handled by transforming data and model the same way
(``d = scale * max(y + r2, 0)``, ``m = scale * (mu + r2)``) and maximising the Poisson likelihood of
``d`` given ``m``:

- sCMOS/CCD Gaussian read noise ``r`` (photons rms): the standard shift ``y + r^2 ~ Poisson(mu + r^2)``
  (``r2 = r^2``, ``scale = 1``), which matches the mean and variance of the true Poisson-Gaussian.
- EMCCD at high gain: the excess-noise factor 2 doubles the variance of detected photons, so
  ``y / 2 ~ Poisson(mu / 2)`` approximately (``scale = 1/2``). The Fisher information is then halved,
  i.e. the reported CRLB (standard deviations) is ``sqrt(2)`` times the pure-Poisson one, the known
  EMCCD precision penalty.

The optimiser is Levenberg-Marquardt on the Poisson log-likelihood with the expected Fisher
information as curvature (Fisher scoring with damping), run independently for every spot in a
numba ``prange`` loop. The CRLB is the square root of the diagonal of the inverse Fisher information
at the estimate (the same transformed model, so it includes the read-noise / EMCCD penalties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

#: Fit status codes returned per spot.
CONVERGED, MAX_ITER, DIVERGED, OUTSIDE = 0, 1, 2, 3

# The fitter's numbers, shared with the torch port (smlmdn.localize.fit_torch): change them here only.
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: Default iteration limit and position tolerance (px) of the convergence test.
DEFAULT_MAX_ITER = 100
DEFAULT_TOL_XY = 1e-3
#: Start values: the background estimate (box-perimeter median) is at least this (photons/pixel),
#: the photon estimate (sum of the excess over it) at least this (photons).
MIN_START_BG = 1e-3
MIN_START_PHOTONS = 1.0
#: Levenberg-Marquardt damping: start value, factor up after a rejected step, factor down after an
#: accepted one (not below LM_LAMBDA_MIN); a spot whose damping reaches LM_LAMBDA_MAX has converged.
LM_LAMBDA_START = 1e-3
LM_LAMBDA_UP = 10.0
LM_LAMBDA_DOWN = 0.1
LM_LAMBDA_MIN = 1e-7
LM_LAMBDA_MAX = 1e10
#: Step bounds: x and y move at most this many pixels per iteration (keeps the fit local) ...
MAX_POSITION_STEP_PX = 1.0
#: ... photons and background fall to at most this fraction per step, and stay above these floors ...
MIN_STEP_FRACTION = 0.1
MIN_PHOTONS = 1e-3
MIN_BG = 1e-6
#: ... sigma falls to at most this fraction per step and stays in [MIN_SIGMA_PX, MAX_SIGMA_BOXES x box].
MIN_SIGMA_STEP_FRACTION = 0.5
MIN_SIGMA_PX = 0.3
MAX_SIGMA_BOXES = 2.0
#: Converged: an accepted step raising the log-likelihood by less than this fraction of (1 + |loglik|)
#: and moving x and y by less than ``tol_xy``.
LL_REL_TOL = 1e-6
#: Diverged: the centre is more than this many box sides from the box origin.
DIVERGE_BOXES = 3


@njit(cache=True)
def _psf_1d(center: float, sigma: float, n: int, e: np.ndarray, de_dc: np.ndarray, de_ds: np.ndarray) -> None:
    """Integrated unit Gaussian over pixels [k, k+1), k = 0..n-1, and its derivatives (centre, sigma)."""
    inv = 1.0 / (_SQRT2 * sigma)
    norm = _INV_SQRT2PI / sigma
    half_inv_var = 0.5 / (sigma * sigma)
    # pixel k spans edges a = k - center and c = k + 1 - center; c is the next pixel's a: evaluate each edge once
    a = -center
    ea = math.exp(-a * a * half_inv_var)
    erf_a = math.erf(a * inv)
    for k in range(n):
        c = k + 1.0 - center
        ec = math.exp(-c * c * half_inv_var)
        erf_c = math.erf(c * inv)
        e[k] = 0.5 * (erf_c - erf_a)
        de_dc[k] = norm * (ea - ec)
        de_ds[k] = norm / sigma * (a * ea - c * ec)
        a, ea, erf_a = c, ec, erf_c


@njit(cache=True)
def _model_loglik(theta, nb, shift, scale, d, ex, dex, dsx, ey, dey, dsy, m) -> float:
    """Compute the transformed model ``m`` (B, B) at ``theta`` and return the Poisson log-likelihood of ``d``.

    The log-likelihood is without the data-only term, ``sum(d log m - m)``, and -inf where the model is
    not positive. ``shift`` (B, B) is the camera shift ``r^2`` plus the known photons of neighbours; the
    1D PSF integrals and their derivatives at ``theta`` are left in ``ex`` ... ``dsy`` for :func:`_score_fisher`.
    """
    x, y, n, b, s = theta[0], theta[1], theta[2], theta[3], theta[4]
    _psf_1d(x, s, nb, ex, dex, dsx)
    _psf_1d(y, s, nb, ey, dey, dsy)
    total = 0.0
    for i in range(nb):
        for j in range(nb):
            mij = scale * (n * (ex[j] * ey[i]) + b + shift[i, j])
            m[i, j] = mij
            if mij <= 0.0:
                total = -np.inf
            elif total > -np.inf:
                total += d[i, j] * math.log(mij) - mij
    return total


@njit(cache=True)
def _score_fisher(theta, nb, npar, scale, d, ex, dex, dsx, ey, dey, dsy, m, fi, g) -> None:
    """Compute the score ``g`` (npar,) and expected Fisher information ``fi`` (npar, npar) at ``theta``.

    ``g_k = sum (d / m - 1) dm_k`` and ``fi_kl = sum dm_k dm_l / m`` over the pixels, with ``m`` and the
    1D integrals left by :func:`_model_loglik` at ``theta``. One pass over the box; the derivatives
    ``dm_k`` (x, y, N, b, sigma) of each pixel and the sums are scalars.
    """
    n, s_n = theta[2], scale * theta[2]
    g0 = g1 = g2 = g3 = g4 = 0.0
    f00 = f01 = f02 = f03 = f11 = f12 = f13 = f22 = f23 = f33 = 0.0
    f04 = f14 = f24 = f34 = f44 = 0.0
    for i in range(nb):
        for j in range(nb):
            d0 = s_n * dex[j] * ey[i]
            d1 = s_n * ex[j] * dey[i]
            d2 = scale * (ex[j] * ey[i])
            d3 = scale
            inv = 1.0 / m[i, j]
            r = d[i, j] / m[i, j] - 1.0
            g0 += r * d0
            g1 += r * d1
            g2 += r * d2
            g3 += r * d3
            w0, w1, w2, w3 = d0 * inv, d1 * inv, d2 * inv, d3 * inv
            f00 += w0 * d0
            f01 += w0 * d1
            f02 += w0 * d2
            f03 += w0 * d3
            f11 += w1 * d1
            f12 += w1 * d2
            f13 += w1 * d3
            f22 += w2 * d2
            f23 += w2 * d3
            f33 += w3 * d3
            if npar == 5:
                d4 = scale * n * (dsx[j] * ey[i] + ex[j] * dsy[i])
                g4 += r * d4
                f04 += w0 * d4
                f14 += w1 * d4
                f24 += w2 * d4
                f34 += w3 * d4
                f44 += (d4 * inv) * d4
    g[0], g[1], g[2], g[3], g[4] = g0, g1, g2, g3, g4
    fi[0, 0], fi[0, 1], fi[0, 2], fi[0, 3], fi[0, 4] = f00, f01, f02, f03, f04
    fi[1, 1], fi[1, 2], fi[1, 3], fi[1, 4] = f11, f12, f13, f14
    fi[2, 2], fi[2, 3], fi[2, 4] = f22, f23, f24
    fi[3, 3], fi[3, 4] = f33, f34
    fi[4, 4] = f44
    for k in range(5):
        for l in range(k + 1, 5):
            fi[l, k] = fi[k, l]


@njit(cache=True)
def _solve(a, rhs, npar, out, w) -> bool:
    """Solve a @ out = rhs (npar x npar) by Gaussian elimination with partial pivoting; False if singular.

    ``w`` is workspace of at least (npar, npar + 1).
    """
    for r in range(npar):
        for c in range(npar):
            w[r, c] = a[r, c]
        w[r, npar] = rhs[r]
    for col in range(npar):
        piv = col
        for r in range(col + 1, npar):
            if abs(w[r, col]) > abs(w[piv, col]):
                piv = r
        if abs(w[piv, col]) < 1e-300 or not np.isfinite(w[piv, col]):
            return False
        if piv != col:
            for c in range(npar + 1):
                tmp = w[col, c]
                w[col, c] = w[piv, c]
                w[piv, c] = tmp
        for r in range(col + 1, npar):
            f = w[r, col] / w[col, col]
            for c in range(col, npar + 1):
                w[r, c] -= f * w[col, c]
    for r in range(npar - 1, -1, -1):
        acc = w[r, npar]
        for c in range(r + 1, npar):
            acc -= w[r, c] * out[c]
        out[r] = acc / w[r, r]
    return True


@njit(cache=True)
def _median_inplace(v) -> float:
    """Median of a short 1D array by insertion sort, in place (no allocation)."""
    n = v.shape[0]
    for i in range(1, n):
        x = v[i]
        j = i - 1
        while j >= 0 and v[j] > x:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = x
    if n % 2:
        return v[n // 2]
    return 0.5 * (v[n // 2 - 1] + v[n // 2])


_CHUNK = 128  # spots per parallel task: workspace arrays are allocated once per chunk


@njit(parallel=True, cache=True, nogil=True)
def _fit_kernel(
    spots,
    offset,
    sigma0,
    fit_sigma,
    r2,
    scale,
    max_iter,
    tol_xy,
    theta_out,
    crlb_out,
    loglik_out,
    llr_out,
    iter_out,
    status_out,
):
    n_spots = spots.shape[0]
    nb = spots.shape[1]
    npar = 5 if fit_sigma else 4
    n_chunks = (n_spots + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        d = np.empty((nb, nb))
        ys = np.empty((nb, nb))
        shift = np.empty((nb, nb))
        per = np.empty(4 * nb - 4)
        theta = np.empty(5)
        ex = np.empty(nb)
        dex = np.empty(nb)
        dsx = np.empty(nb)
        ey = np.empty(nb)
        dey = np.empty(nb)
        dsy = np.empty(nb)
        m = np.empty((nb, nb))
        fi = np.empty((5, 5))
        a = np.empty((5, 5))
        g = np.empty(5)
        step = np.zeros(5)
        trial = np.empty(5)
        inv_col = np.empty(5)
        e = np.zeros(5)
        work = np.empty((5, 6))
        for k in range(c * _CHUNK, min(n_spots, (c + 1) * _CHUNK)):
            off = offset[k] if offset.shape[0] > 1 else offset[0]
            for i in range(nb):
                for j in range(nb):
                    ys[i, j] = spots[k, i, j] - off[i, j]
                    shift[i, j] = r2 + off[i, j]
            # fmt: off
            _fit_one(spots[k], ys, shift, k, nb, npar, sigma0, r2, scale, max_iter, tol_xy,  # data and settings
                     d, per, theta, ex, dex, dsx, ey, dey, dsy, m, fi, a, g, step, trial, inv_col, e, work,  # workspace
                     theta_out, crlb_out, loglik_out, llr_out, iter_out, status_out)  # outputs
            # fmt: on


# fmt: off
@njit(cache=True)
def _fit_one(y_raw, ys, shift, k, nb, npar, sigma0, r2, scale, max_iter, tol_xy,  # data and settings
             d, per, theta, ex, dex, dsx, ey, dey, dsy, m, fi, a, g, step, trial, inv_col, e, work,  # workspace
             theta_out, crlb_out, loglik_out, llr_out, iter_out, status_out):  # outputs
    # fmt: on
    """Fit one spot (see :func:`fit_spots`).

    ``y_raw`` (B, B) photons, ``ys`` the same less the known neighbours (for the start values),
    ``shift`` the model's fixed part; all arrays after ``tol_xy`` are preallocated workspace.
    """
    for i in range(nb):
        for j in range(nb):
            v = y_raw[i, j] + r2
            d[i, j] = scale * (v if v > 0.0 else 0.0)
    # --- initial values: background = median of the box perimeter, centroid of the excess
    q = 0
    for j in range(nb):
        per[q] = ys[0, j]
        per[q + 1] = ys[nb - 1, j]
        q += 2
    for i in range(1, nb - 1):
        per[q] = ys[i, 0]
        per[q + 1] = ys[i, nb - 1]
        q += 2
    b0 = _median_inplace(per)
    if b0 < MIN_START_BG:
        b0 = MIN_START_BG
    tot = 0.0
    sx = 0.0
    sy = 0.0
    for i in range(nb):
        for j in range(nb):
            w = ys[i, j] - b0
            if w > 0.0:
                tot += w
                sx += w * (j + 0.5)
                sy += w * (i + 0.5)
    if tot > 0.0:
        theta[0] = sx / tot
        theta[1] = sy / tot
    else:
        theta[0] = 0.5 * nb
        theta[1] = 0.5 * nb
    theta[2] = max(tot, MIN_START_PHOTONS)
    theta[3] = b0
    theta[4] = sigma0
    # --- Levenberg-Marquardt with Fisher-scoring curvature
    for p in range(5):
        step[p] = 0.0
    ll = _model_loglik(theta, nb, shift, scale, d, ex, dex, dsx, ey, dey, dsy, m)
    lam = LM_LAMBDA_START
    status = MAX_ITER
    it = 0
    while it < max_iter:
        it += 1
        _score_fisher(theta, nb, npar, scale, d, ex, dex, dsx, ey, dey, dsy, m, fi, g)
        improved = False
        small = False
        while lam < LM_LAMBDA_MAX:
            for p in range(npar):
                for c in range(npar):
                    a[p, c] = fi[p, c]
                a[p, p] = fi[p, p] * (1.0 + lam)
            if not _solve(a, g, npar, step, work):
                lam *= LM_LAMBDA_UP
                continue
            for p in range(5):
                trial[p] = theta[p]
            # bound the position step to one pixel per iteration (keeps the fit local)
            for p in range(2):
                st = step[p]
                if st > MAX_POSITION_STEP_PX:
                    st = MAX_POSITION_STEP_PX
                elif st < -MAX_POSITION_STEP_PX:
                    st = -MAX_POSITION_STEP_PX
                trial[p] = theta[p] + st
            trial[2] = max(theta[2] + step[2], MIN_STEP_FRACTION * theta[2], MIN_PHOTONS)
            trial[3] = max(theta[3] + step[3], MIN_STEP_FRACTION * theta[3], MIN_BG)
            if npar == 5:
                trial[4] = min(
                    max(theta[4] + step[4], MIN_SIGMA_STEP_FRACTION * theta[4], MIN_SIGMA_PX), MAX_SIGMA_BOXES * nb
                )
            ll_new = _model_loglik(trial, nb, shift, scale, d, ex, dex, dsx, ey, dey, dsy, m)
            if ll_new >= ll:
                small = (
                    abs(trial[0] - theta[0]) < tol_xy
                    and abs(trial[1] - theta[1]) < tol_xy
                    and (ll_new - ll) < LL_REL_TOL * (1.0 + abs(ll))
                )
                for p in range(5):
                    theta[p] = trial[p]
                ll = ll_new
                lam = max(lam * LM_LAMBDA_DOWN, LM_LAMBDA_MIN)
                improved = True
                break
            lam *= LM_LAMBDA_UP
        if not improved:
            # no step increases the likelihood: we are at the (numerical) maximum
            _model_loglik(theta, nb, shift, scale, d, ex, dex, dsx, ey, dey, dsy, m)
            status = CONVERGED
            break
        if small:
            status = CONVERGED
            break
        if abs(theta[0]) > DIVERGE_BOXES * nb or abs(theta[1]) > DIVERGE_BOXES * nb or not np.isfinite(ll):
            status = DIVERGED
            break
    # --- outputs at the estimate (m already holds the model at theta: the last accepted step or the recompute)
    _score_fisher(theta, nb, npar, scale, d, ex, dex, dsx, ey, dey, dsy, m, fi, g)
    for p in range(5):
        theta_out[k, p] = theta[p]
        crlb_out[k, p] = np.nan
    ok = True
    for p in range(npar):
        for c in range(npar):
            e[c] = 0.0
        e[p] = 1.0
        if not _solve(fi, e, npar, inv_col, work):
            ok = False
            break
        crlb_out[k, p] = math.sqrt(inv_col[p]) if inv_col[p] > 0.0 else np.nan
    ll_full = 0.0
    dev = 0.0
    for i in range(nb):
        for j in range(nb):
            mi = m[i, j]
            di = d[i, j]
            ll_full += di * math.log(mi) - mi - math.lgamma(di + 1.0)
            dev += mi - di
            if di > 0.0:
                dev += di * math.log(di / mi)
    loglik_out[k] = ll_full
    llr_out[k] = 2.0 * dev
    iter_out[k] = it
    if not ok or not np.isfinite(ll_full):
        status = DIVERGED
    elif status == CONVERGED and (theta[0] < 0.0 or theta[0] > nb or theta[1] < 0.0 or theta[1] > nb):
        status = OUTSIDE
    status_out[k] = status


@dataclass
class FitResult:
    """Per-spot fit results; positions in box pixel coordinates (pixel (0,0) covers [0,1)^2).

    ``theta`` (n, 5): x_px, y_px, photons, bg (photons/pixel), sigma_px. ``crlb`` (n, 5): the
    Cramer-Rao lower bound (standard deviation) of each, NaN for sigma when it was fixed.
    ``loglik`` (n,): Poisson log-likelihood at the estimate (of the transformed data, see module
    docstring); ``llr`` (n,): log-likelihood ratio against the saturated model (Poisson deviance,
    ~ chi2 with B*B - n_params degrees of freedom for a good fit); ``iterations`` (n,);
    ``status`` (n,): CONVERGED, MAX_ITER, DIVERGED or OUTSIDE (centre left the box).
    """

    theta: np.ndarray
    crlb: np.ndarray
    loglik: np.ndarray
    llr: np.ndarray
    iterations: np.ndarray
    status: np.ndarray


def fit_spots(
    spots: np.ndarray,
    sigma_px: float,
    *,
    fit_sigma: bool = False,
    read_noise_photons: float = 0.0,
    excess_noise: float = 1.0,
    max_iter: int = DEFAULT_MAX_ITER,
    tol_xy: float = DEFAULT_TOL_XY,
    offset: np.ndarray | None = None,
) -> FitResult:
    """Fit every spot in ``spots`` (n, B, B) detected photons with an integrated Gaussian by Poisson MLE.

    ``sigma_px`` is the PSF standard deviation in pixels (fixed, or the start value when
    ``fit_sigma``). ``read_noise_photons`` is the Gaussian read noise in photons rms (sCMOS shift
    ``y + r^2``); ``excess_noise`` is 2 for an EMCCD (variance inflation), 1 otherwise. A fit has
    converged when an accepted step moves x and y by less than ``tol_xy`` pixels and raises the
    log-likelihood by less than 1e-6 of its magnitude, or when no step raises it any more; it stops
    after ``max_iter`` iterations otherwise (status MAX_ITER). ``offset`` (n, B, B), optional: photons
    per pixel known to come from neighbouring molecules, added to the model (held fixed). See the
    module docstring for the model and the meaning of the outputs.
    """
    spots = np.ascontiguousarray(spots, dtype=np.float64)
    if spots.ndim != 3 or spots.shape[1] != spots.shape[2]:
        raise ValueError(f"spots must be (n, B, B), got {spots.shape}")
    n = spots.shape[0]
    offset = np.zeros((1, *spots.shape[1:])) if offset is None else np.ascontiguousarray(offset, dtype=np.float64)
    if offset.shape != spots.shape and offset.shape != (1, *spots.shape[1:]):
        raise ValueError(f"offset must have the shape of spots {spots.shape}, got {offset.shape}")
    theta = np.empty((n, 5))
    crlb = np.empty((n, 5))
    loglik = np.empty(n)
    llr = np.empty(n)
    iterations = np.empty(n, dtype=np.int32)
    status = np.empty(n, dtype=np.int8)
    if n:
        _fit_kernel(
            spots,
            offset,
            float(sigma_px),
            bool(fit_sigma),
            float(read_noise_photons) ** 2,
            1.0 / float(excess_noise),
            int(max_iter),
            float(tol_xy),
            theta,
            crlb,
            loglik,
            llr,
            iterations,
            status,
        )
    return FitResult(theta, crlb, loglik, llr, iterations, status)
