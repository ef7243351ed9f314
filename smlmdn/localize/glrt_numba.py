"""The acceptance test of :mod:`smlmdn.localize.glrt`, compiled.

One pass over each box instead of numpy temporaries of every box for every Fisher-scoring step.

:func:`glrt` and :func:`glrt_estimates` take the same arguments and return the same results as their
references in :mod:`smlmdn.localize.glrt` (to float round-off: the sums run in another order, and the
iterations stop at :data:`STEP_TOL`; tested), with the same transformed counts
(:func:`smlmdn.localize.glrt.transformed_counts`). Measured on a 128 x 128 px x
2,000-frame movie (58,783 candidates, 13 x 13 px test boxes): the test took 19 % of a whole
``smlmdn localize`` process with the numpy version.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from scipy.special import ndtr

from .glrt import _NEWTON_STEPS, transformed_counts

#: The Newton / Fisher-scoring iterations stop once a step moves each parameter by at most this
#: fraction of (1 + its size): the reference's further steps change ``z`` by < 1e-8. Measured on
#: 40,000 13 x 13 px boxes (0-3,000 photons, background 2-30, with and without neighbours' photons):
#: 5-6 steps instead of 12, the test 35-40 % faster, ``z`` within 3e-9 of the reference's.
STEP_TOL = 1e-10


@njit(parallel=True, cache=True, nogil=True)
def _signed_root(
    d: np.ndarray, g: np.ndarray, o: np.ndarray, steps: int, z: np.ndarray, est: np.ndarray
) -> None:  # pragma: no cover
    """Compute the signed-root LR statistic ``z`` (n,) and the H1 MLE ``est`` (n, 2) per row of ``d``.

    ``d`` (n, P) transformed counts, unit PSF ``g`` (n, P) and known neighbours' transformed photons
    ``o`` (n, P) or (1, P) of zeros -> ``z`` (n,) and ``est`` (n, 2): the scaled ``(N, b + shift)``.

    Line by line the algorithm of :func:`smlmdn.localize.glrt.glrt`: H0 box mean (Newton steps with an
    offset); H1 (N, b) from the least-squares start by at most ``steps`` Fisher-scoring steps, each
    halved (at most 30 times) until the model is positive at every pixel (a pass over the box only where
    the step's ``N`` is negative, ``b`` is not positive, or the template or offset has a negative
    pixel: otherwise the model is positive). Unlike the reference, the iterations stop once a step
    moves the parameters by at most :data:`STEP_TOL` of their size.
    """
    n, npx = d.shape
    for i in prange(n):
        oi = o[i] if o.shape[0] > 1 else o[0]
        dsum = 0.0
        gsum = 0.0
        osum = 0.0
        omin = np.inf
        gmin = np.inf
        for p in range(npx):
            dsum += d[i, p]
            gsum += g[i, p]
            osum += oi[p]
            omin = min(omin, oi[p])
            gmin = min(gmin, g[i, p])
        nonnegative = omin >= 0.0 and gmin >= 0.0  # then N >= 0 and b > 0 keep the model positive
        dmean, gmean, omean = dsum / npx, gsum / npx, osum / npx
        a0 = max(dmean - omean, 1e-6)
        if osum != 0.0:  # background-only MLE with an offset: Newton on sum(d / (a + o) - 1) = 0
            lo = -omin + 1e-9
            for _ in range(steps):
                score = 0.0
                info = 0.0
                for p in range(npx):
                    m = a0 + oi[p]
                    score += d[i, p] / m - 1.0
                    info += d[i, p] / (m * m)
                new = max(a0 + score / max(info, 1e-300), 0.5 * (a0 + lo))
                settled = abs(new - a0) <= STEP_TOL * (1.0 + abs(a0))
                a0 = new
                if settled:
                    break
        l0 = 0.0
        for p in range(npx):
            m0 = max(a0 + oi[p], 1e-12)
            l0 += d[i, p] * math.log(m0) - m0
        num = 0.0
        den = 0.0
        for p in range(npx):
            gc = g[i, p] - gmean
            num += gc * (d[i, p] - oi[p])
            den += gc * gc
        a_n = num / max(den, 1e-12)
        a_b = max(dmean - omean - a_n * gmean, 1e-6)
        for _ in range(steps):
            s_n = s_b = f_nn = f_nb = f_bb = 0.0
            for p in range(npx):
                m = max(a_n * g[i, p] + a_b + oi[p], 1e-12)
                w = d[i, p] / m - 1.0
                inv = 1.0 / m
                s_n += w * g[i, p]
                s_b += w
                f_nn += inv * g[i, p] * g[i, p]
                f_nb += inv * g[i, p]
                f_bb += inv
            det = max(f_nn * f_bb - f_nb * f_nb, 1e-300)
            step_n = (f_bb * s_n - f_nb * s_b) / det
            step_b = (f_nn * s_b - f_nb * s_n) / det
            t = 1.0
            for _ in range(30):
                trial_n, trial_b = a_n + t * step_n, a_b + t * step_b
                if nonnegative and trial_n >= 0.0 and trial_b > 0.0:
                    break
                lowest = np.inf
                for p in range(npx):
                    lowest = min(lowest, trial_n * g[i, p] + trial_b + oi[p])
                if lowest > 0:
                    break
                t *= 0.5
            a_n += t * step_n
            a_b += t * step_b
            if abs(t * step_n) <= STEP_TOL * (1.0 + abs(a_n)) and abs(t * step_b) <= STEP_TOL * (1.0 + abs(a_b)):
                break
        l1 = 0.0
        for p in range(npx):
            m = max(a_n * g[i, p] + a_b + oi[p], 1e-12)
            l1 += d[i, p] * math.log(m) - m
        root = math.sqrt(max(2.0 * (l1 - l0), 0.0))
        z[i] = root if a_n > 0 else (-root if a_n < 0 else 0.0)
        est[i, 0] = a_n
        est[i, 1] = a_b


def glrt(
    spots: np.ndarray,
    templates: np.ndarray,
    *,
    read_noise_photons: float = 0.0,
    excess_noise: float = 1.0,
    n_frames: int | np.ndarray = 1,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`smlmdn.localize.glrt.glrt`, compiled: ``spots`` and ``templates`` (n, B, B) -> ``(z, p)`` float64 (n,).

    Same arguments and meaning (``offset``: known neighbours' photons, see the reference).
    """
    z, p, _, _ = glrt_estimates(
        spots,
        templates,
        read_noise_photons=read_noise_photons,
        excess_noise=excess_noise,
        n_frames=n_frames,
        offset=offset,
    )
    return z, p


def glrt_estimates(
    spots: np.ndarray,
    templates: np.ndarray,
    *,
    read_noise_photons: float = 0.0,
    excess_noise: float = 1.0,
    n_frames: int | np.ndarray = 1,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`smlmdn.localize.glrt.glrt_estimates`, compiled -> ``(z, p, photons, bg)``, each float64 (n,).

    Same arguments and results as the reference (to float round-off): ``photons`` is the H1 MLE of the
    PSF's photons, ``bg`` of the background photons per pixel.
    """
    d, shift, scale = transformed_counts(spots, read_noise_photons, excess_noise, n_frames)
    n, npx = d.shape
    d = np.ascontiguousarray(d)
    g = np.ascontiguousarray(np.asarray(templates, dtype=np.float64).reshape(n, npx))
    o = (
        np.zeros((1, npx))
        if offset is None
        else np.ascontiguousarray(scale * np.asarray(offset, np.float64).reshape(n, npx))
    )
    z, est = np.empty(n), np.empty((n, 2))
    if n:
        _signed_root(d, g, o, _NEWTON_STEPS, z, est)
    # back from the scaled, shifted counts: est = (s N, s (b + shift))
    return z, ndtr(-z), est[:, 0] / scale, est[:, 1] / scale - shift
