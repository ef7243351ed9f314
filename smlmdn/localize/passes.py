"""Test-and-fit passes over one frame block: the single-emitter pass and the multi-emitter residual pass.

Single-emitter pass: every candidate is tested on the raw photon counts of its window
(:mod:`smlmdn.localize.glrt`), candidates the movie-wide FDR decision could never keep are dropped,
and the rest are fitted (:mod:`smlmdn.localize.fit`).

Multi-emitter pass (DAOSTORM-style, Holden, Uphoff & Kapanidis 2011, Nat. Methods 8:279): the
molecules the first pass found are rendered and subtracted; candidates are proposed on the residual
frames and tested and fitted with the known molecules as a fixed per-pixel offset; then every
localization with a neighbour in its window is refitted with the others held fixed (Gauss-Seidel
sweeps: colour by colour, each holding its neighbours' latest fits), two fits of one frame closer
than :data:`MERGE_SIGMAS` PSF sigmas are one molecule fitted twice (the dimmer is dropped), and the
crowded ones are re-tested with their neighbours as offset, so a candidate that was only a brighter
neighbour's tail is rejected. Only localizations that
Benjamini-Hochberg accepts within the block count as known molecules: a noise fit held fixed would
bias its neighbours' tests (measured on a pure-noise movie, background 100 photons: 81 false
localizations with every fit held fixed, 3 with the accepted ones only, as without the pass).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..psf import render_spots
from .detect import Candidates, detect
from .fit import CONVERGED, OUTSIDE, FitResult, fit_spots
from .glrt import benjamini_hochberg, psf_templates
from .glrt_numba import glrt
from .neighbours import Molecules, patch_radius

#: With pooling, a localization's own frame must still reach this single-frame p-value.
MEMBER_ALPHA = 0.01
#: A localization is refitted with its neighbours held fixed when they put more than this many photons
#: into its test window (fewer would not move the fit).
NEIGHBOUR_PHOTONS = 1.0
#: Sweeps of refitting crowded localizations (the last one re-tests them too), and the distance (PSF
#: sigmas) below which two localizations of one frame are one molecule fitted twice. Measured
#: (benchmarks/localize_grid.py points base, bg-100, density-0.1, dense-bright-wide; Jaccard /
#: efficiency) with Jacobi sweeps (all refitted at once) and every fit held fixed: 4 sweeps 81.4/54.6,
#: 66.2/35.1, 84.9/65.6, 43.6/12.5; 8 sweeps 81.8/57.4, 66.4/36.7, 84.9/67.2, 43.4/14.8; 8 sweeps and
#: merging below 1.5 sigma 82.6/60.9, 66.9/38.3, 85.9/68.4, 40.9/14.4; the same with only the accepted
#: fits held fixed: 82.6/61.6, 72.2/43.3, 87.3/69.9, 40.9/14.3. Jacobi sweeps do not settle (a fifth
#: of the crowded spots still refitted after 30 sweeps: two fits sharing a molecule trade its photons);
#: Gauss-Seidel sweeps do, slowly. Over all 17 grid points against 8 Jacobi sweeps (mean / worst
#: change of Jaccard; mean change of efficiency): 5 GS sweeps -0.06 / -0.5; +0.32, 6: -0.10 / -0.8;
#: +0.62 (with a first colouring that let some spots of a colour touch: 4 sweeps -0.03 / -0.3; -0.28,
#: 8: -0.10 / -0.9; +0.90, 8 merging below 1.25 sigma: +0.24 / -0.1; +0.63 but no faster than
#: Jacobi); 6 GS sweeps take 5 % less CPU time than 8 Jacobi sweeps (benchmarks/RESULTS.md, Session 10).
REFINE_SWEEPS = 6
MERGE_SIGMAS = 1.5
#: A crowded spot is refitted in a sweep only when its neighbours' photons in its fit box changed since
#: its fit by more than this many of the fit's noise standard deviations (:meth:`BlockPasses.offset_moved`;
#: the refit would move its parameters by less than this fraction of their CRLB). Each fit stays the MLE
#: with its held offset, which is within this tolerance of its neighbours' current photons. Measured
#: (sim128 movie, first 400 frames, one thread): refits 89,652 -> 43,300 (tolerance 0, 0.3), Jaccard
#: 77.53 -> 77.54, efficiency 58.18 -> 58.18; at 1.0, 28,724 refits but efficiency 57.4 and the merged
#: pair of tests/test_localize_detect.py separated in 0.43-0.63 of frames instead of 0.65-0.9 (Jacobi
#: sweeps). With 6 Gauss-Seidel sweeps, over the 17 grid points against 8 Jacobi sweeps at 0.3 (mean
#: change of Jaccard / efficiency): 0.3 -0.10 / +0.62, 0.5 -0.09 / +0.56, 1.0 -0.08 / +0.12; 0.5 takes
#: 3 % less CPU time than 0.3 (benchmarks/RESULTS.md, Session 10).
REFIT_TOLERANCE = 0.5
#: Acceptance tests per pixel with the multi-emitter pass: the residual pass may test a pixel again, so the
#: Benjamini-Hochberg decision (in the block and over the movie) counts two.
TESTS_PER_PIXEL = 2
_FIT_FIELDS = ("theta", "crlb", "loglik", "llr", "iterations", "status")
_SPOT_ARRAYS = ("oy", "ox", "p_value", "p_frame", "held", "p_pool")


def boxes(frames: np.ndarray, t: np.ndarray, oy: np.ndarray, ox: np.ndarray, box: int) -> np.ndarray:
    """Cut the ``box x box`` windows (n, B, B) float64 out of ``frames`` (T, Y, X).

    The windows are at frames ``t`` and corners (``oy``, ``ox``) (n,), all inside the frames.
    """
    out = np.empty((len(t), box, box))
    if len(t):
        idx = [np.ascontiguousarray(a, dtype=np.int64) for a in (t, oy, ox)]
        _gather(np.ascontiguousarray(frames), idx[0], idx[1], idx[2], out)
    return out


@njit(cache=True, nogil=True)
def _gather(frames, t, oy, ox, out):  # pragma: no cover
    """``out[k] = frames[t[k], oy[k]:oy[k] + B, ox[k]:ox[k] + B]`` for ``out`` (n, B, B)."""
    box = out.shape[1]
    for k in range(t.shape[0]):
        for i in range(box):
            for j in range(box):
                out[k, i, j] = frames[t[k], oy[k] + i, ox[k] + j]


@njit(cache=True, nogil=True)
def _offset_chi2(theta, held, offset, r2, scale, out):  # pragma: no cover
    """``out[k] = scale sum (offset - held)^2 / mu`` over box ``k`` (:meth:`BlockPasses.offset_moved`).

    ``mu = N Ex Ey + b + r2 + min(held, offset)`` with ``theta[k] = (x, y, N, b, sigma)``, at least 1e-6.
    """
    nb = held.shape[1]
    ex = np.empty(nb)
    ey = np.empty(nb)
    for k in range(theta.shape[0]):
        inv = 1.0 / (math.sqrt(2.0) * theta[k, 4])
        for e, c in ((ex, theta[k, 0]), (ey, theta[k, 1])):
            below = math.erf(-c * inv)
            for i in range(nb):
                above = math.erf((i + 1.0 - c) * inv)
                e[i] = 0.5 * (above - below)
                below = above
        total = 0.0
        for i in range(nb):
            for j in range(nb):
                d = offset[k, i, j] - held[k, i, j]
                mu = theta[k, 2] * ex[j] * ey[i] + theta[k, 3] + r2 + min(held[k, i, j], offset[k, i, j])
                total += d * d / max(mu, 1e-6)
        out[k] = scale * total


def corners(cand: Candidates, box: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (rows, cols) of ``box x box`` windows centred on the candidates, shifted to lie inside ``shape`` (Y, X)."""
    r = box // 2
    return np.clip(cand.row - r, 0, shape[0] - box), np.clip(cand.col - r, 0, shape[1] - box)


def acceptance_p_values(
    own: np.ndarray,
    pooled: tuple[np.ndarray, np.ndarray] | None,
    t: np.ndarray,
    oy: np.ndarray,
    ox: np.ndarray,
    templates: np.ndarray,
    *,
    box: int,
    read_noise_photons: float,
    excess_noise: float,
    offset: np.ndarray | None = None,
    p_pool: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GLRT p-values on raw photons for candidates at block frames ``t`` -> ``(p, p_frame, p_pool)``, each (n,).

    ``own`` (T, Y, X): the block's raw photons; ``p_frame`` tests the candidate's own frame. With
    ``pooled`` (sums over neighbouring frames and their frame counts, see
    :func:`smlmdn.localize.pipeline.pooled_frames`), the test is repeated on the counts summed over the
    neighbouring frames (a blink's photons pooled) and ``p = min(1, 2 min(p_frame, p_pool))``
    (Bonferroni over the two tests, so ``p`` stays a valid p-value of "no molecule in any of these
    frames"); without pooling ``p = p_frame``. Windows of side ``box`` at corners (``oy``, ``ox``);
    ``templates`` (n, box, box) the unit PSF tested; ``offset`` (n, box, box): known photons of
    neighbouring molecules in each window (own frame only; the pooled test does not use it).
    ``p_pool`` (n,): pooled p-values known from an earlier test of the same windows (it depends on
    neither the offset nor a fit), NaN where unknown; only those are computed. Without pooling
    ``p_pool`` is returned NaN.
    """
    _, p_frame = glrt(
        boxes(own, t, oy, ox, box),
        templates,
        offset=offset,
        read_noise_photons=read_noise_photons,
        excess_noise=excess_noise,
    )
    if pooled is None:
        return p_frame, p_frame, np.full(len(t), np.nan)
    sums, n_frames = pooled
    p_pool = np.full(len(t), np.nan) if p_pool is None else np.array(p_pool, dtype=np.float64)
    todo = np.isnan(p_pool)
    if todo.any():
        tt = t[todo]
        _, p_pool[todo] = glrt(
            boxes(sums, tt, oy[todo], ox[todo], box),
            templates[todo],
            n_frames=n_frames[tt],
            read_noise_photons=read_noise_photons,
            excess_noise=excess_noise,
        )
    return np.minimum(1.0, 2.0 * np.minimum(p_frame, p_pool)), p_frame, p_pool


@dataclass
class Spots:
    """Fitted candidates of one block: where they were proposed and what the fit found.

    ``cand``: the candidates; ``oy``/``ox`` (n,): corners of their fit boxes; ``res``: the fit (box
    coordinates, pixels); ``p_value``/``p_frame`` (n,): acceptance p-values (:func:`acceptance_p_values`);
    ``held`` (n, B, B): the photons of known neighbours the fit held fixed in the fit box (0 without);
    ``p_pool`` (n,): the pooled test's p-value, NaN where it was not run.
    """

    cand: Candidates
    oy: np.ndarray
    ox: np.ndarray
    res: FitResult
    p_value: np.ndarray
    p_frame: np.ndarray
    held: np.ndarray
    p_pool: np.ndarray

    def __len__(self) -> int:
        """Return the number of spots."""
        return len(self.cand)

    def subset(self, keep: np.ndarray) -> Spots:
        """Return the spots where the boolean (n,) ``keep`` is True, or at the indices ``keep`` (copies)."""
        res = FitResult(*(getattr(self.res, f)[keep] for f in _FIT_FIELDS))
        return Spots(self.cand.subset(keep), res=res, **{f: getattr(self, f)[keep] for f in _SPOT_ARRAYS})

    def copy(self) -> Spots:
        """Return the spots with every array copied (as ``subset`` of all, without the selection)."""
        res = FitResult(*(getattr(self.res, f).copy() for f in _FIT_FIELDS))
        cand = Candidates(**{f.name: getattr(self.cand, f.name).copy() for f in dataclasses.fields(self.cand)})
        return Spots(cand, res=res, **{f: getattr(self, f).copy() for f in _SPOT_ARRAYS})

    def join(self, other: Spots) -> Spots:
        """Return these spots followed by ``other``'s."""
        cat = np.concatenate
        res = FitResult(*(cat([getattr(self.res, f), getattr(other.res, f)]) for f in _FIT_FIELDS))
        cand = Candidates(
            *(cat([getattr(self.cand, f), getattr(other.cand, f)]) for f in ("frame", "row", "col", "significance"))
        )
        return Spots(cand, res=res, **{f: cat([getattr(self, f), getattr(other, f)]) for f in _SPOT_ARRAYS})

    def xy_px(self) -> tuple[np.ndarray, np.ndarray]:
        """Fitted positions (x, y) (n,) in frame pixel coordinates (pixel (0, 0) covers [0, 1)^2)."""
        return self.res.theta[:, 0] + self.ox, self.res.theta[:, 1] + self.oy

    def render(self, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
        """Render the fitted molecules as expected photons (T, Y, X) float64 (:func:`smlmdn.psf.render_spots`)."""
        x, y = self.xy_px()
        return render_spots(x, y, self.res.theta[:, 2], sigma_px, shape, frame=self.cand.frame)

    def molecules(self, shape: tuple[int, ...], sigma_px: float) -> Molecules:
        """Return the fitted molecules, for their photons in windows of a block of ``shape`` (T, Y, X).

        The photons are those of :meth:`render`, cut into windows by :mod:`smlmdn.localize.neighbours`.
        """
        x, y = self.xy_px()
        return Molecules.of(self.cand.frame, x, y, self.res.theta[:, 2], shape, sigma_px)


@dataclass
class BlockPasses:
    """The test-and-fit passes over one block, with its data and settings (built by :func:`smlmdn.localize.pipeline.localize_block`).

    ``own`` (T, Y, X): the block's raw photons (camera noise ``read_noise_photons``, ``excess_noise``);
    ``fit_frames``: the movie fitted (``own``, or a denoised movie with ``fit_on_raw`` False, fitted
    with the plain Poisson model); ``pooled``: neighbouring-frame sums for the pooled test or None;
    ``box``: fit window, ``tb``: test window (px); ``threshold``: proposal significance for the
    residual pass; ``max_p``: the FDR level when candidates the movie-wide decision cannot keep are
    to be dropped (None: ``--threshold`` mode); ``counts`` is updated in place.
    """

    own: np.ndarray
    fit_frames: np.ndarray
    pooled: tuple[np.ndarray, np.ndarray] | None
    box: int
    tb: int
    sigma_px: float
    threshold: float
    read_noise_photons: float
    excess_noise: float
    fit_on_raw: bool
    fit_sigma: bool
    fit_device: str | None
    max_p: float | None
    counts: dict[str, int]

    def fit(self, spots: np.ndarray, offset: np.ndarray | None) -> FitResult:
        """Fit boxes (n, B, B) of ``fit_frames`` with known neighbour photons ``offset``: numba, or torch on ``fit_device``."""
        r, e = (self.read_noise_photons, self.excess_noise) if self.fit_on_raw else (0.0, 1.0)
        if self.fit_device is None:
            return fit_spots(
                spots, self.sigma_px, fit_sigma=self.fit_sigma, read_noise_photons=r, excess_noise=e, offset=offset
            )
        from .fit_torch import fit_spots_torch

        return fit_spots_torch(
            spots,
            self.sigma_px,
            fit_sigma=self.fit_sigma,
            read_noise_photons=r,
            excess_noise=e,
            offset=offset,
            device=self.fit_device,
        )

    def p_values(
        self,
        cand: Candidates,
        ty: np.ndarray,
        tx: np.ndarray,
        pooled: tuple[np.ndarray, np.ndarray] | None,
        offset: np.ndarray | None,
        p_pool: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compute the acceptance p-values of ``cand`` at their pixels -> ``(p_value, p_frame, p_pool)``, each (n,).

        The test windows are at corners (``ty``, ``tx``); ``p_pool``: the pooled ones known (see
        :func:`acceptance_p_values`).
        """
        templates = psf_templates(cand.col - tx + 0.5, cand.row - ty + 0.5, self.sigma_px, self.tb)
        return acceptance_p_values(
            self.own,
            pooled,
            cand.frame,
            ty,
            tx,
            templates,
            box=self.tb,
            offset=offset,
            p_pool=p_pool,
            read_noise_photons=self.read_noise_photons,
            excess_noise=self.excess_noise,
        )

    def test_and_fit(self, cand: Candidates, known: Molecules | None = None) -> Spots:
        """Test ``cand`` (with the ``known`` molecules' photons as offset), drop the hopeless, fit the rest."""
        ty, tx = corners(cand, self.tb, self.own.shape[1:])
        if known is None:
            p_value, p_frame, p_pool = self.p_values(cand, ty, tx, self.pooled, None)
        else:
            p_value, p_frame, p_pool = self.p_values(cand, ty, tx, None, known.boxes(cand.frame, ty, tx, self.tb))
        if self.max_p is not None:  # Benjamini-Hochberg never accepts p > fdr: do not fit what cannot be kept
            hopeful = (p_value <= self.max_p) & (p_frame <= MEMBER_ALPHA)
            self.counts["n_rejected"] += int(np.sum(~hopeful))
            cand, p_value, p_frame, p_pool = cand.subset(hopeful), p_value[hopeful], p_frame[hopeful], p_pool[hopeful]
        oy, ox = corners(cand, self.box, self.own.shape[1:])
        offset = None if known is None else known.boxes(cand.frame, oy, ox, self.box)
        res = self.fit(boxes(self.fit_frames, cand.frame, oy, ox, self.box), offset)
        held = np.zeros((len(cand), self.box, self.box)) if offset is None else offset
        return self.good(Spots(cand, oy, ox, res, p_value, p_frame, held, p_pool))

    def good(self, sp: Spots) -> Spots:
        """Return the spots whose fit converged inside its box with finite CRLB and positive photons; the others are counted."""
        return sp.subset(self.keep_good(sp))

    def keep_good(self, sp: Spots) -> np.ndarray:
        """Return which spots (bool (n,)) :meth:`good` keeps, counting the others."""
        res = sp.res
        good = (
            (res.status == CONVERGED)
            & np.isfinite(res.crlb[:, 0])
            & np.isfinite(res.crlb[:, 1])
            & (res.theta[:, 2] > 0)
        )
        outside = int(np.sum(res.status == OUTSIDE))
        self.counts["n_dropped_outside"] += outside
        self.counts["n_dropped_nonconverged"] += int(np.sum(~good)) - outside
        return good

    def confident(self, sp: Spots) -> np.ndarray:
        """Return the spots (bool (n,)) that Benjamini-Hochberg accepts within this block.

        Accepted at :data:`TESTS_PER_PIXEL`, as the movie-wide decision with the residual pass: only
        these count as known molecules.
        """
        if self.max_p is None:
            return np.ones(len(sp), dtype=bool)
        return benjamini_hochberg(sp.p_value, TESTS_PER_PIXEL * self.own.size, self.max_p) & (
            sp.p_frame <= MEMBER_ALPHA
        )

    def residual_pass(self, spots: Spots) -> Spots:
        """Propose on the frames less the fitted ``spots``, test and fit the new candidates with those held fixed."""
        known = spots.molecules(self.own.shape, self.sigma_px)
        more = detect(
            self.own - known.render().astype(np.float32),
            self.sigma_px,
            self.box,
            self.threshold,
            unit_noise=True,
            read_noise_photons=self.read_noise_photons,
            excess_noise=self.excess_noise,
        )
        # where the known molecules put (almost) no photons into the test window, the residual is the raw
        # frame: the first pass already tested those candidates
        near = self.window_sums(known, more)
        taken = set(zip(spots.cand.frame.tolist(), spots.cand.row.tolist(), spots.cand.col.tolist(), strict=True))
        fresh = [k not in taken for k in zip(more.frame.tolist(), more.row.tolist(), more.col.tolist(), strict=True)]
        more = more.subset(np.array(fresh, dtype=bool) & (near > NEIGHBOUR_PHOTONS))
        self.counts["n_candidates"] += len(more)
        return self.test_and_fit(more, known)

    def multi_emitter(self, spots: Spots) -> Spots:
        """Run the multi-emitter pass (module docstring) on the first pass's ``spots``; return all spots."""
        sure = self.confident(spots)
        rest, core = spots.subset(~sure), spots.subset(sure)
        new = self.residual_pass(core)
        sure = self.confident(new)
        rest, core = rest.join(new.subset(~sure)), core.join(new.subset(sure))
        for _ in range(REFINE_SWEEPS - 1):
            core, n_refit = self.sweep(core)
            if not n_refit:  # settled: every fit is its MLE with the others held fixed, within REFIT_TOLERANCE
                break
        core = self.merge_close(core)
        return self.retest(core).join(rest)

    def merge_close(self, sp: Spots) -> Spots:
        """Drop the dimmer of every two spots of one frame closer than :data:`MERGE_SIGMAS` PSF sigmas."""
        keep = sp.molecules(self.own.shape, self.sigma_px).brightest_apart(MERGE_SIGMAS * self.sigma_px)
        self.counts["n_merged"] += int(np.sum(~keep))
        return sp.subset(keep)

    def window_sums(self, known: Molecules, cand: Candidates) -> np.ndarray:
        """Photons (n,) of the ``known`` molecules in the test window centred on each candidate's pixel."""
        r = self.tb // 2
        return known.sums(cand.frame, cand.row - r, cand.col - r, self.tb)

    def sweep(self, sp: Spots) -> tuple[Spots, int]:
        """One Gauss-Seidel sweep: refit the crowded spots colour by colour, each colour holding the latest fits of the others.

        Spots of one colour (:meth:`Molecules.colours`) are too far apart to reach each other's fit
        boxes (a fit lies in its box, so a neighbour reaching the box is within ``box - 1`` px plus its
        patch radius of the fit), so they are refitted together (:meth:`refit`). Returns the spots
        (failed refits dropped and counted) and how many were refitted. Unlike refitting all at once
        (Jacobi), this settles: two fits sharing one molecule's photons no longer trade them back and
        forth from sweep to sweep.
        """
        sp = sp.copy()
        reach = self.box - 1 + patch_radius(self.sigma_px)
        colour = sp.molecules(self.own.shape, self.sigma_px).colours(reach)
        n_refit = 0
        for c in range(int(colour.max(initial=-1)) + 1):
            n_refit += self.refit(sp, np.flatnonzero(colour == c))
            keep = self.keep_good(sp)
            if not keep.all():
                sp, colour = sp.subset(keep), colour[keep]
        return sp, n_refit

    def retest(self, sp: Spots) -> Spots:
        """Refit and re-test every crowded spot once with the others held fixed (all at once); return the good ones."""
        sp = sp.copy()
        self.refit(sp, np.arange(len(sp)), test=True)
        return self.good(sp)

    def refit(self, sp: Spots, among: np.ndarray, test: bool = False) -> int:
        """Refit, in place, the spots ``among`` (indices) with neighbours in their window, the others held fixed.

        Returns how many were refitted. The offset of spot k is the photons of all the other spots in its
        window (:mod:`smlmdn.localize.neighbours`). Spots with less than :data:`NEIGHBOUR_PHOTONS` of
        neighbours' photons in the test window around their pixel keep their fit and p-value (they would
        not change); so do those whose offset moved by no more than :data:`REFIT_TOLERANCE`
        (:meth:`offset_moved`) since their fit. With ``test`` every spot with neighbours is re-tested.
        """
        if not among.size:
            return 0
        known = sp.molecules(self.own.shape, self.sigma_px)
        idx = among[self.window_sums(known, sp.cand.subset(among)) - sp.res.theta[among, 2] > NEIGHBOUR_PHOTONS]
        if not idx.size:
            return 0
        few = sp.subset(idx)
        offset = known.boxes(few.cand.frame, few.oy, few.ox, self.box, exclude=idx)
        moved = self.offset_moved(few.res.theta, few.held, offset)
        refit = idx[moved]
        res = self.fit(
            boxes(self.fit_frames, few.cand.frame[moved], few.oy[moved], few.ox[moved], self.box), offset[moved]
        )
        for f in _FIT_FIELDS:
            getattr(sp.res, f)[refit] = getattr(res, f)
        sp.held[refit] = offset[moved]
        if test:
            ty, tx = corners(few.cand, self.tb, self.own.shape[1:])
            test_offset = known.boxes(few.cand.frame, ty, tx, self.tb, exclude=idx)
            # the pooled test holds no neighbours: a p-value known from the first pass is reused
            sp.p_value[idx], sp.p_frame[idx], sp.p_pool[idx] = self.p_values(
                few.cand, ty, tx, self.pooled, test_offset, few.p_pool
            )
        return len(refit)

    def offset_moved(self, theta: np.ndarray, held: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Return which fits (bool (n,)) the neighbours' photons ``offset`` (n, B, B) moved beyond :data:`REFIT_TOLERANCE`.

        For fits ``theta`` (n, 5) made with the neighbours' photons ``held`` (n, B, B) (NaN: no such fit,
        moved), the change ``D = offset - held`` is measured in the fit's noise:
        ``chi2 = sum D^2 / mu`` over the fit box, with ``mu`` the fitted model's expected counts in
        the camera noise model of :mod:`smlmdn.localize.fit` (``s (N g + b + r^2 + o)``, the smaller
        of the old and new offset ``o``, ``s = 1 / excess``). To first order the MLE moves by
        ``I^-1 J' W D`` (``I`` the Fisher information, ``J`` the model's Jacobian, ``W = 1 / mu``), whose
        Mahalanobis length ``sqrt(dtheta' I dtheta)`` is at most ``sqrt(chi2)``: below the tolerance
        the refit would move every parameter by less than that fraction of its CRLB.
        """
        r2, scale = (self.read_noise_photons**2, 1.0 / self.excess_noise) if self.fit_on_raw else (0.0, 1.0)
        chi2 = np.empty(len(theta))
        if len(theta):
            _offset_chi2(
                np.ascontiguousarray(theta, dtype=np.float64),
                np.ascontiguousarray(held, dtype=np.float64),
                np.ascontiguousarray(offset, dtype=np.float64),
                r2,
                scale,
                chi2,
            )
        return ~(chi2 <= REFIT_TOLERANCE**2)
