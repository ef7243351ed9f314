"""Calibrated detection: a generalized likelihood-ratio test on photon counts, and FDR control.

Smith, Huisman, Siebrasse, Kubitscheck, Grünwald & Stallinga (2015), "Simultaneous
maximum-likelihood estimation and hypothesis testing for single-molecule detection", Mol. Biol.
Cell 26:4057. For a box of counts ``y`` (B x B) centred on a candidate pixel:

- H1: ``mu = N g + b`` (a PSF ``g`` of known width at the pixel centre, free ``N`` and ``b``);
- H0: ``mu = b`` (background only).

The counts pass through the same camera noise model as the fit (:mod:`smlmdn.localize.fit`):
``d = s * max(y + r^2, 0)`` is treated as Poisson with mean ``s * (mu + r^2)`` (sCMOS shift
``r^2``, EMCCD scale ``s = 1/2``). With ``L = 2 (l1 - l0)`` the likelihood ratio, the signed root
``z = sign(N) sqrt(L)`` is asymptotically standard normal under H0 (Wilks; one parameter, ``N``,
tested at an interior point), so the one-sided p-value ``p = 1 - Phi(z)`` is uniform on pure noise
and small only for *positive* extra intensity.

Photons known to come from neighbouring molecules (an earlier fit, see the residual pass of
:mod:`smlmdn.localize.pipeline`) enter both hypotheses as a fixed per-pixel offset ``o``: H1 ``mu =
N g + b + o``, H0 ``mu = b + o``; the test then asks whether the box holds a molecule *beyond* them.

Counts summed over ``n`` frames are again Poisson (with shift ``n r^2``), so the same test on the
sum of a blink's neighbouring frames pools their evidence (:func:`glrt` with ``n_frames``).

False-discovery-rate control over a whole movie (Benjamini & Hochberg 1995) treats every pixel of
every frame as one test, as Smith et al. do. Only candidates (local maxima of the detection image)
get a p-value; pixels that were not candidates are never rejected, which can only make the procedure
more conservative than testing all pixels.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from ..psf import integrated_gaussian_1d

#: Newton iterations of the two-parameter (N, b) fit; it converges in a handful.
_NEWTON_STEPS = 12


def psf_templates(cx_px: np.ndarray, cy_px: np.ndarray, sigma_px: float | np.ndarray, box: int) -> np.ndarray:
    """Unit-intensity integrated-Gaussian PSFs (n, B, B) centred at box coordinates (``cx_px``, ``cy_px``) (n,), width ``sigma_px`` (scalar or (n,))."""
    ex = integrated_gaussian_1d(np.asarray(cx_px, dtype=np.float64), sigma_px, box)
    ey = integrated_gaussian_1d(np.asarray(cy_px, dtype=np.float64), sigma_px, box)
    return ey[:, :, None] * ex[:, None, :]


def glrt(
    spots: np.ndarray,
    templates: np.ndarray,
    *,
    read_noise_photons: float = 0.0,
    excess_noise: float = 1.0,
    n_frames: int | np.ndarray = 1,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed-root likelihood-ratio statistic and one-sided p-value of "a PSF is present" per box.

    ``spots`` (n, B, B): detected photons (photoelectrons), summed over ``n_frames`` frames (scalar
    or (n,)) when pooling; ``templates`` (n, B, B): the unit PSF at the tested position (see
    :func:`psf_templates`). ``read_noise_photons`` (photons rms per frame) and ``excess_noise`` (2 for
    an EMCCD) as in :func:`smlmdn.localize.fit.fit_spots`. ``offset`` (n, B, B), optional: photons per
    pixel known to come from other molecules, part of both hypotheses.

    Returns ``(z, p)``, each float64 (n,): ``z ~ N(0, 1)`` and ``p ~ U(0, 1)`` under H0 (no molecule).
    The background-only MLE is closed form; the (N, b) MLE is Fisher scoring from the linear
    least-squares start, with ``N`` allowed to be negative (so the signed root is defined both ways)
    as long as the model stays positive.
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
    """:func:`glrt` -> ``(z, p, photons, bg)``: also the H1 maximum-likelihood ``N`` and ``b``, each float64 (n,).

    ``photons``: the PSF's photons; ``bg``: background photons per pixel (of the summed frames).
    """
    d, shift, scale = transformed_counts(spots, read_noise_photons, excess_noise, n_frames)
    n, bb = d.shape
    g = np.asarray(templates, dtype=np.float64).reshape(n, bb)
    o = np.zeros_like(d) if offset is None else scale * np.asarray(offset, dtype=np.float64).reshape(n, bb)

    def loglik(m: np.ndarray) -> np.ndarray:  # Poisson log-likelihood without the data-only term
        return np.sum(d * np.log(m) - m, axis=1)

    def model(a_n: np.ndarray, a_b: np.ndarray) -> np.ndarray:  # H1 mean per pixel, s (N g + b + shift + o)
        return a_n[:, None] * g + a_b[:, None] + o

    l0 = loglik(np.maximum(_background_mle(d, o)[:, None] + o, 1e-12))
    # H1: m = s (N g + b + shift + o); parameters u = (s N, s (b + shift)), start at least squares
    gc = g - g.mean(axis=1, keepdims=True)
    a_n = np.sum(gc * (d - o), axis=1) / np.maximum(np.sum(gc * gc, axis=1), 1e-12)
    a_b = np.maximum((d - o).mean(axis=1) - a_n * g.mean(axis=1), 1e-6)
    for _ in range(_NEWTON_STEPS):
        m = np.maximum(model(a_n, a_b), 1e-12)
        w = d / m - 1.0  # score weights
        inv = 1.0 / m  # expected Fisher information weights
        s_n, s_b = np.sum(w * g, axis=1), np.sum(w, axis=1)
        f_nn, f_nb, f_bb = np.sum(inv * g * g, axis=1), np.sum(inv * g, axis=1), np.sum(inv, axis=1)
        det = np.maximum(f_nn * f_bb - f_nb * f_nb, 1e-300)
        step_n = (f_bb * s_n - f_nb * s_b) / det
        step_b = (f_nn * s_b - f_nb * s_n) / det
        # keep the model positive at every pixel: shrink the step where it would not be
        t = np.ones(n)
        for _ in range(30):
            bad = np.min(model(a_n + t * step_n, a_b + t * step_b), axis=1) <= 0
            if not bad.any():
                break
            t = np.where(bad, 0.5 * t, t)
        a_n, a_b = a_n + t * step_n, a_b + t * step_b
    l1 = loglik(np.maximum(model(a_n, a_b), 1e-12))
    z = np.sign(a_n) * np.sqrt(np.maximum(2.0 * (l1 - l0), 0.0))
    # back from the scaled, shifted counts: a_n = s N, a_b = s (b + shift)
    return z, ndtr(-z), a_n / scale, a_b / scale - shift


def transformed_counts(
    spots: np.ndarray, read_noise_photons: float, excess_noise: float, n_frames: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Boxes (n, B, B) of photons -> ``(d, shift, scale)``: the counts the test treats as Poisson.

    ``d = scale * max(y + shift, 0)`` (n, B*B) float64 with ``shift = read_noise^2 * n_frames`` (n,)
    (the sCMOS shift, per summed frame) and ``scale = 1 / excess_noise`` (the EMCCD scaling), as in
    :func:`smlmdn.localize.fit.fit_spots`; parameters fitted to ``d`` map back by ``/ scale`` and ``- shift``.
    """
    y = np.asarray(spots, dtype=np.float64)
    n = y.shape[0]
    y = y.reshape(n, y.shape[1] * y.shape[2])
    shift = float(read_noise_photons) ** 2 * np.broadcast_to(np.asarray(n_frames, dtype=np.float64), (n,))
    scale = 1.0 / float(excess_noise)
    return scale * np.maximum(y + shift[:, None], 0.0), shift, scale


def _background_mle(d: np.ndarray, o: np.ndarray) -> np.ndarray:
    """Estimate ``a`` (n,) by MLE in ``d ~ Poisson(a + o)`` per row of ``d``, ``o`` (n, P).

    The estimate is the box mean of ``d`` when ``o`` is zero, else Newton's method on the score
    ``sum(d / (a + o) - 1)`` (concave, so it converges).
    """
    a = np.maximum(d.mean(axis=1) - o.mean(axis=1), 1e-6)
    if not o.any():
        return a
    lo = -o.min(axis=1) + 1e-9  # a + o must stay positive
    for _ in range(_NEWTON_STEPS):
        m = a[:, None] + o
        score, info = np.sum(d / m - 1.0, axis=1), np.sum(d / (m * m), axis=1)
        a = np.maximum(a + score / np.maximum(info, 1e-300), 0.5 * (a + lo))
    return a


def benjamini_hochberg(p: np.ndarray, n_tests: int, fdr: float) -> np.ndarray:
    """Boolean mask (n,) of the p-values ``p`` (n,) rejected by Benjamini-Hochberg at level ``fdr``.

    ``n_tests`` is the number of hypotheses tested in all (>= len(p)); hypotheses that got no
    p-value count as not rejected. Valid under independence and positive dependence (PRDS), which the
    overlapping boxes of neighbouring pixels have. Raises ValueError unless ``0 < fdr < 1``.
    """
    p = np.asarray(p, dtype=np.float64)
    step_up = StepUp(max(int(n_tests), len(p)), fdr)
    step_up.add(p)
    return p <= step_up.threshold


class StepUp:
    """The Benjamini-Hochberg threshold over p-values given in parts, holding only those still undecided.

    Benjamini & Hochberg (1995): with the ``m`` p-values sorted, ``p_(1) <= ... <= p_(m)``, reject
    those up to the largest ``p_(k) <= fdr k / m``; equivalently every ``p <= T``, with ``T`` the largest
    p-value with ``#{p_i <= T} >= T m / fdr``. More p-values only raise the counts, so the threshold of
    the parts seen so far is a lower bound of the final one: p-values at or below it are only counted,
    and only those between it and :attr:`limit` are kept (``fdr m / m`` as computed, the largest
    ``fdr k / m``: no p-value above it can ever be rejected). Memory: the p-values not yet decided, not
    all of them. ``n_tests``: the ``m`` of the whole family (at least the number of p-values given).
    Raises ValueError unless ``0 < fdr < 1``, or when more than ``n_tests`` p-values are added.
    """

    def __init__(self, n_tests: int, fdr: float) -> None:
        if not 0 < fdr < 1:
            raise ValueError(f"fdr must be in (0, 1), got {fdr}")
        self.n_tests, self.fdr = int(n_tests), float(fdr)
        #: The largest p-value that may be rejected: ``fdr k / m`` at ``k = m``, rounded as the test rounds it.
        self.limit = self.fdr * self.n_tests / self.n_tests if self.n_tests else self.fdr
        self._threshold = -np.inf  # the p-values <= threshold are rejected (none yet)
        self._n_added = self._n_below = 0  # p-values given, and those <= threshold
        self._open = np.zeros(0)  # p-values in (threshold, limit], sorted
        self._new: list[np.ndarray] = []  # p-values in (threshold, limit] given since, each part sorted

    @property
    def threshold(self) -> float:
        """The threshold of every p-value added so far: those at or below it are rejected (-inf: none)."""
        self._settle()
        return self._threshold

    def add(self, p: np.ndarray) -> None:
        """Add p-values ``p`` (n,) of the family."""
        p = np.asarray(p, dtype=np.float64).ravel()
        self._n_added += len(p)
        if self._n_added > self.n_tests:
            raise ValueError(f"{self._n_added} p-values for a family of {self.n_tests} tests")
        self._n_below += int(np.sum(p <= self._threshold))
        self._new.append(np.sort(p[(p > self._threshold) & (p <= self.limit)]))
        if sum(map(len, self._new)) >= max(len(self._open), 2**16):  # amortised: each p-value merged a few times
            self._settle()

    def _settle(self) -> None:
        """Merge the new p-values into the open ones and raise the threshold as far as they allow."""
        if not self._new:
            return
        # sorted runs: the stable sort (timsort) merges them in linear time
        self._open = np.sort(np.concatenate([self._open, *self._new]), kind="stable")
        self._new = []
        rank = self._n_below + np.arange(1, len(self._open) + 1)  # of each open p-value among all given
        below = self._open <= self.fdr * rank / self.n_tests
        if below.any():
            last = int(np.nonzero(below)[0][-1])
            self._threshold = float(self._open[last])
            self._n_below += last + 1
            self._open = self._open[last + 1 :]
