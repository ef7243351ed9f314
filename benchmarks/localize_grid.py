"""Benchmark: localization over a grid of simulated conditions, smlmdn against Picasso, side by side.

Why: a threshold tuned on one simulator can lose to Picasso on data from another (issue 10, item 4).
This script varies what a user's data varies, one condition at a time around a base point plus a few
corners, and at every point runs every *variant* on the same movie in the same run:

- ``raw default``: ``smlmdn.localize.pipeline.localize`` in raw mode at its defaults (adaptive
  threshold), told the true PSF sigma and camera, as a user would;
- ``raw oracle``: the same with the expert override ``threshold`` (band-pass significance, no FDR
  control) swept against the ground truth (best Jaccard): the ceiling a tuning-free default should
  reach (target: default within 1 Jaccard point of it);
- ``raw fdr oracle``: the default pipeline with its false-discovery rate ``fdr`` swept likewise
  (skipped by a ``localize`` without ``fdr``);
- ``picasso oracle``: Picasso's ``identify`` + ``fit`` (``gaussmle``: Poisson MLE of an integrated
  Gaussian with sigma x, y fitted) on the ADU movie with the same camera numbers, box 7, minimum net
  gradient swept against the ground truth (best Jaccard). Picasso's code is imported from
  ``benchmarks/localize.py`` (``prepare_picasso``), not copied.

Grid (:data:`POINTS`; 100-nm pixels, filaments, off-time 300 frames). ``density`` here is the number
of emitters *on* per um^2 per frame (truth rows per frame per um^2, partial frames included; the
simulator's labelled density is set from it with ``SimulationParams.active_density``). Base point:
0.3 /um^2 on, 1,000 photons per frame (gamma, CV 0.3), background 20 photons/px with a Gaussian
illumination profile, PSF sigma 1.3 px, mean on-time 3 frames, sCMOS. One-at-a-time variations span
density 0.1-2, photons 200-5,000, lognormal brightness, background 5-100 (flat and profiled), PSF
sigma 0.9-1.6 px, on-time 1-10 frames, EMCCD; corners combine them (one mimics the foreign movie of
issue 10: 300 photons lognormal, flat background 30, PSF 1.2 px, 0.15 /um^2).

Scores: :func:`smlmdn.evaluate.match.match_localizations` (per frame, Hungarian, 250 nm): recall,
precision, Jaccard (%), RMSE (nm), efficiency ``100 - sqrt((100 - J)^2 + RMSE^2)``, against *all*
truth rows (also the dim partial-frame ones).

``--set MODULE.NAME=VALUE`` (repeatable) changes a constant of ``smlmdn.localize.MODULE`` for the run,
e.g. ``--set passes.REFINE_SWEEPS=8 --set passes.MERGE_SIGMAS=1.25``: a column of settings measured on
the same movies as the defaults (recorded in the JSON's ``settings`` and the command line).

Adding a variant is one line in :data:`VARIANTS`: a name and a function ``(photons, camera, case,
truth) -> locs`` where ``photons`` is the (T, Y, X) float32 movie in photoelectrons, ``camera`` the
:class:`smlmdn.camera.Camera`, ``case`` a :class:`Case` (``case.sim``: the SimulationParams,
``case.movie``: the uint16 ADU movie, ``case.psf_sigma_nm``, ``case.point``) and ``truth`` the
ground truth (only oracles may look at it). ``locs`` needs ``frame, x_nm, y_nm``; a swept variant
returns :func:`sweep`'s table, whose ``attrs`` carry the chosen value. Raise :class:`Skip` to leave a
point out (e.g. a denoiser variant run on a subset). Examples::

    "raw fdr 0.01": lambda ph, cam, case, truth: smlmdn_localize(ph, cam, case, fdr=0.01),
    "raw fdr oracle": lambda ph, cam, case, truth: sweep(lambda q: smlmdn_localize(ph, cam, case, fdr=q),
                                                         [1e-4, 1e-3, 1e-2, 0.05, 0.2], truth, "fdr"),

Run it in the benchmark environment (Picasso, ``picassosr``, is only installed there; smlmdn is
installed in it in editable mode)::

    nice -n 5 .benchvenv/bin/python benchmarks/localize_grid.py --json grid.json \\
        --results benchmarks/RESULTS.md

``--points base,emccd`` / ``--variants "raw default,raw oracle"`` filter (comma-separated names),
``--quick`` runs 200-frame movies of 48 x 48 px with shorter sweeps (a smoke test, minutes),
``--results FILE`` writes the Markdown between ``<!-- localize_grid:start -->`` and
``<!-- localize_grid:end -->`` in FILE.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import inspect
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
MARK_START, MARK_END = "<!-- localize_grid:start -->", "<!-- localize_grid:end -->"


# ------------------------------------------------------------------------------------------ grid


@dataclass(frozen=True)
class Point:
    """One simulated condition. ``density``: emitters on per um^2 per frame; ``psf_px``: PSF sigma in pixels."""

    name: str
    density: float = 0.3
    photons: float = 1000.0
    brightness: str = "gamma"
    background: float = 20.0
    flat_background: bool = False
    psf_px: float = 1.3
    on_time: float = 3.0
    camera: str = "scmos"
    off_time: float = 300.0

    def params(self, frames: int, size: int, seed: int) -> Any:
        from smlmdn.simulate import SimulationParams

        # labelled density such that `active_density` (emitters on per um^2 per frame) is self.density
        labelled = self.density * (self.on_time + self.off_time) / (self.on_time + 1.0)
        return SimulationParams(
            frames=frames,
            size=size,
            pixel_size=100.0,
            density=labelled,
            photons=self.photons,
            photons_cv=0.3,
            brightness=self.brightness,
            background=self.background,
            flat_background=self.flat_background,
            psf_sigma=100.0 * self.psf_px,
            on_time=self.on_time,
            off_time=self.off_time,
            structure="filaments",
            camera_type=self.camera,
            seed=seed,
        )

    def describe(self) -> str:
        bg = f"{self.background:g} {'flat' if self.flat_background else 'profiled'}"
        return (
            f"{self.density:g} /um^2, {self.photons:g} ph {self.brightness}, bg {bg}, PSF {self.psf_px:g} px, "
            f"on {self.on_time:g} fr, {self.camera}"
        )


def _v(name: str, **kw: Any) -> Point:
    return Point(name, **kw)


#: Base point, one-at-a-time variations, corners.
POINTS: list[Point] = [
    _v("base"),
    _v("photons-200", photons=200.0),
    _v("photons-5000", photons=5000.0),
    _v("lognormal", brightness="lognormal"),
    _v("bg-5", background=5.0),
    _v("bg-100", background=100.0),
    _v("bg-flat", flat_background=True),
    _v("psf-0.9", psf_px=0.9),
    _v("psf-1.6", psf_px=1.6),
    _v("on-1", on_time=1.0),
    _v("on-10", on_time=10.0),
    _v("emccd", camera="emccd"),
    _v("density-0.1", density=0.1),
    _v("density-2", density=2.0),
    # corners
    _v(
        "issue-sparse-low",
        density=0.15,
        photons=300.0,
        brightness="lognormal",
        background=30.0,
        flat_background=True,
        psf_px=1.2,
    ),
    _v(
        "emccd-low-long",
        camera="emccd",
        photons=300.0,
        brightness="lognormal",
        background=50.0,
        flat_background=True,
        on_time=10.0,
    ),
    _v("dense-bright-wide", density=2.0, photons=5000.0, brightness="lognormal", psf_px=1.6, background=5.0),
]


@dataclass
class Case:
    """What a variant gets besides photons, camera and truth."""

    point: Point
    sim: Any  # SimulationParams
    movie: np.ndarray  # uint16 ADU (T, Y, X)
    quick: bool = False
    memo: dict[str, pd.DataFrame] = field(default_factory=dict)  # tables shared by variants of this point

    @property
    def psf_sigma_nm(self) -> float:
        return float(self.sim.psf_sigma)


class Skip(Exception):
    """Raised by a variant that does not run at this point (the table says why)."""


# ------------------------------------------------------------------------------------- scoring


def score(locs: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    from smlmdn.evaluate.match import match_localizations

    m = match_localizations(locs, truth, tolerance_nm=250.0)
    return {k: float(getattr(m, k)) for k in ("recall", "precision", "jaccard", "rmse_nm", "efficiency")}


def sweep(
    run: Callable[[float], pd.DataFrame],
    values: Iterable[float],
    truth: pd.DataFrame,
    key: str,
    refine: bool = True,
    patience: int = 2,
) -> pd.DataFrame:
    """Oracle: the table of ``run(value)`` with the best Jaccard against ``truth``.

    ``values`` go from the most conservative setting to the most liberal (so early runs are cheap);
    the walk stops once ``patience`` values in a row score below the best (Jaccard is unimodal in a
    detection threshold), then, with ``refine``, the geometric midpoints on both sides of the best
    value are tried. The returned table's ``attrs`` hold ``chosen`` ({key: value}) and ``sweep``
    ([[value, Jaccard, n_locs], ...] in the order run).
    """
    values = list(values)
    tried: dict[float, tuple[float, pd.DataFrame]] = {}

    def attempt(v: float) -> float:
        if v not in tried:
            locs = run(v)
            tried[v] = (score(locs, truth)["jaccard"] if len(locs) else 0.0, locs)
        return tried[v][0]

    best_i, worse = 0, 0
    for i, v in enumerate(values):
        j = attempt(v)
        if j >= tried[values[best_i]][0]:
            best_i, worse = i, 0
        else:
            worse += 1
            if worse >= patience:
                break
    if refine:
        b = values[best_i]
        for n in (best_i - 1, best_i + 1):
            if 0 <= n < len(values) and values[n] > 0 and b > 0:
                attempt(float(np.sqrt(values[n] * b)))
    best = max(tried, key=lambda v: tried[v][0])
    locs = tried[best][1]
    locs.attrs["chosen"] = {key: best}
    locs.attrs["sweep"] = [[v, round(j, 2), len(t)] for v, (j, t) in tried.items()]
    return locs


# -------------------------------------------------------------------------------------- smlmdn


def smlmdn_localize(photons: np.ndarray, camera: Any, case: Case, **kw: Any) -> pd.DataFrame:
    """``smlmdn.localize.pipeline.localize`` on the raw photons with the true PSF sigma; ``kw`` pass through."""
    from smlmdn.localize.pipeline import localize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no molecules found" at extreme thresholds
        return localize(photons, camera, psf_sigma_nm=case.psf_sigma_nm, progress=False, **kw)


def smlmdn_default_threshold(case: Case) -> float:
    from smlmdn.localize.detect import default_threshold

    return float(default_threshold(case.psf_sigma_nm / case.sim.pixel_size))


def _accepted_by(locs: pd.DataFrame) -> dict[str, Any]:
    """The acceptance setting a localize() table says it used: ``fdr`` (calibrated test) or ``threshold``."""
    if locs.attrs.get("fdr") is not None:
        return {"fdr": locs.attrs["fdr"]}
    return {"threshold": locs.attrs.get("threshold", float("nan"))}


def raw_default_table(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
    """The default table, extended frames included (computed once per point, shared by the variants)."""
    if "raw default" not in case.memo:
        case.memo["raw default"] = smlmdn_localize(photons, camera, case)
    locs = case.memo["raw default"].copy()
    locs.attrs = dict(case.memo["raw default"].attrs)
    locs.attrs["chosen"] = _accepted_by(locs)
    return locs


def raw_default_uncached(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
    """The default table computed afresh (for ablations that change module settings)."""
    return smlmdn_localize(photons, camera, case)


def raw_default(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
    """The default's per-frame rows: each frame's own fits (the linked variants add the extended frames)."""
    return _own_frames(raw_default_table(photons, camera, case, truth))


def _own_frames(locs: pd.DataFrame) -> pd.DataFrame:
    own = locs[~locs["extended"].to_numpy(bool)] if "extended" in locs.columns else locs
    own.attrs = dict(locs.attrs)
    return own


def relinked(n_sigma: float, max_gap: int) -> Callable[..., pd.DataFrame]:
    """The default's own-frame rows linked again with other linking settings, scored at the linked positions."""

    def run(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
        from smlmdn.localize.link import LINK_COLUMNS, link, linked_positions

        locs = raw_default(photons, camera, case, truth).drop(columns=list(LINK_COLUMNS))
        out = linked_positions(link(locs, n_sigma=n_sigma, max_gap=max_gap))
        out.attrs = {**locs.attrs, "chosen": {"n_sigma": n_sigma, "max_gap": max_gap}}
        return out

    return run


def _chosen_as(locs: pd.DataFrame, label: str) -> pd.DataFrame:
    """``locs`` with its acceptance setting and ``label`` recorded as the chosen setting."""
    locs.attrs["chosen"] = {**_accepted_by(locs), label: "on"}
    return locs


def raw_oracle(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
    d = smlmdn_default_threshold(case)
    factors = [2.0, 1.6, 1.3, 1.15, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5] if not case.quick else [1.6, 1.3, 1.0, 0.8, 0.6]
    values = [round(d * f, 3) for f in factors]
    return sweep(lambda thr: smlmdn_localize(photons, camera, case, threshold=thr), values, truth, "threshold")


def raw_fdr_oracle(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
    """The default pipeline (calibrated acceptance) with its false-discovery rate swept: the oracle of the default."""
    if "fdr" not in inspect.signature(_localize()).parameters:
        raise Skip("localize() has no fdr argument in this version")
    values = [1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5] if not case.quick else [1e-4, 0.01, 0.05, 0.3]
    # per-frame rows: the extension only adds rows next to blinks, so without it the own-frame rows are the same
    return sweep(lambda q: smlmdn_localize(photons, camera, case, fdr=q, extend=False), values, truth, "fdr")


def raw_pool(pool: int) -> Callable[..., pd.DataFrame]:
    """The default pipeline with candidates also tested on the counts pooled over ``t - pool .. t + pool``."""

    def run(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
        if "pool" not in inspect.signature(_localize()).parameters:
            raise Skip("localize() has no pool argument in this version")
        locs = smlmdn_localize(photons, camera, case, pool=pool, extend=False)  # own-frame rows (linked: no extension)
        locs.attrs["chosen"] = {**_accepted_by(locs), "pool": pool}
        return locs

    return run


def linked(variant: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
    """``variant`` scored at each localization's linked blink position (``x_linked_nm``, ``y_linked_nm``)."""

    def run(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
        from smlmdn.localize.link import linked_positions

        locs = variant(photons, camera, case, truth)
        out = linked_positions(locs)
        out.attrs = dict(locs.attrs)
        return out

    return run


def ablation(variant: Callable[..., pd.DataFrame], module: str, name: str, value: Any) -> Callable[..., pd.DataFrame]:
    """``variant`` with ``module.name`` set to ``value`` while it runs: what one design choice is worth."""

    def run(photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame) -> pd.DataFrame:
        mod = importlib.import_module(module)
        old = getattr(mod, name)
        setattr(mod, name, value)
        try:
            return variant(photons, camera, case, truth)
        finally:
            setattr(mod, name, old)

    return run


def _localize() -> Callable[..., pd.DataFrame]:
    from smlmdn.localize.pipeline import localize

    return localize


# ------------------------------------------------------------------------------------- Picasso


def _bench_localize() -> Any:
    """benchmarks/localize.py as a module (its Picasso runner), imported once."""
    name = "_smlmdn_bench_localize"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "localize.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def picasso_oracle(
    photons: np.ndarray, camera: Any, case: Case, truth: pd.DataFrame, method: str = "gaussmle"
) -> pd.DataFrame:
    bl = _bench_localize()
    version, why = bl.picasso_version()
    if not version:
        raise Skip(f"picassosr not importable ({why}); run in .benchvenv")
    # Minimum net gradient in Picasso's units (ADU of the band-passed frame): scale a photon-space
    # ladder by ADU per photoelectron so the sweep covers the same range for sCMOS and EMCCD.
    adu_per_e = camera.em_gain / camera.e_per_adu
    base = [4000, 2500, 1600, 1000, 640, 400, 250, 160, 100, 64, 40, 25, 16]
    if case.quick:
        base = base[::2]
    values = [round(v * adu_per_e, 1) for v in base]

    def run(ng: float) -> pd.DataFrame:
        return bl.prepare_picasso(case.movie, camera, ng, method)[0]

    return sweep(run, values, truth, "min_net_gradient")


#: name -> function(photons, camera, case, truth) -> locs. Add variants here (one line each).
VARIANTS: dict[str, Callable[..., pd.DataFrame]] = {
    "raw default": raw_default,
    "raw oracle": raw_oracle,
    "raw fdr oracle": raw_fdr_oracle,
    "raw pool 1": raw_pool(1),
    "raw linked": linked(raw_default_table),
    "raw linked no extension": linked(raw_default),
    "raw pool 1 linked": linked(raw_pool(1)),
    **{  # linking-settings study (without the extension); the default is n_sigma 5, max_gap 1
        f"raw linked nsig {ns:g} gap {g}": relinked(ns, g)
        for ns, g in [
            (3.0, 0),
            (3.0, 1),
            (4.0, 0),
            (4.0, 1),
            (5.0, 0),
            (5.0, 1),
            (6.0, 0),
            (6.0, 1),
            (8.0, 1),
            (5.0, 2),
            (6.0, 2),
        ]
    },
    "raw single-emitter": lambda ph, cam, case, truth: _chosen_as(
        smlmdn_localize(ph, cam, case, multi_emitter=False, extend=False), "single-emitter"
    ),
    "picasso oracle": picasso_oracle,
    # ablations (run them with --variants): the design choices of the default, one at a time
    "ablation: test window = fit box": ablation(raw_default, "smlmdn.localize.pipeline", "TEST_BOX_SIGMAS", 0.0),
    "ablation: NMS window = fit box": ablation(
        raw_default, "smlmdn.localize.detect", "nms_size", lambda sigma_px, box: box
    ),
    "ablation: extend tracks of 2+": linked(ablation(raw_default_uncached, "smlmdn.localize.extend", "MIN_TRACK", 2)),
    "ablation: pool 1, member p 0.05": ablation(raw_pool(1), "smlmdn.localize.pipeline", "MEMBER_ALPHA", 0.05),
}
#: Variants run when --variants is not given (the ablations only on request).
DEFAULT_VARIANTS = [n for n in VARIANTS if not n.startswith(("ablation", "raw linked nsig"))]


# ---------------------------------------------------------------------------------------- run


def run_point(
    point: Point, variants: dict[str, Callable[..., pd.DataFrame]], frames: int, size: int, seed: int, quick: bool
) -> list[dict[str, Any]]:
    import dask.array as da

    from smlmdn.camera import to_photons
    from smlmdn.simulate import simulate

    t0 = time.perf_counter()
    sim = simulate(point.params(frames, size, seed))
    photons = np.asarray(to_photons(da.from_array(sim.movie), sim.camera).compute(), dtype=np.float32)
    case = Case(point, sim.params, sim.movie, quick)
    truth = sim.truth
    n_per_frame = len(truth) / frames / (sim.params.field_nm / 1000.0) ** 2
    print(
        f"[{point.name}] {point.describe()}: {len(truth)} truth rows ({n_per_frame:.2f} /um^2/frame), "
        f"simulated in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    for name, fn in variants.items():
        row: dict[str, Any] = {"point": point.name, "variant": name, "n_truth": len(truth)}
        t1 = time.perf_counter()
        try:
            locs = fn(photons, sim.camera, case, truth)
            row.update(score(locs, truth))
            row["n_locs"] = len(locs)
            row["chosen"] = locs.attrs.get("chosen", {})
            if "sweep" in locs.attrs:
                row["sweep"] = locs.attrs["sweep"]
        except Skip as exc:
            row["note"] = f"skipped: {exc}"
        except Exception as exc:  # one failing variant must not lose the grid
            row["note"] = f"failed: {type(exc).__name__}: {exc}"
        row["seconds"] = time.perf_counter() - t1
        rows.append(row)
        msg = row.get("note") or f"J {row['jaccard']:.1f} eff {row['efficiency']:.1f} {_chosen(row)}"
        print(f"[{point.name}] {name}: {msg} ({row['seconds']:.1f} s)", file=sys.stderr, flush=True)
    bl = sys.modules.get("_smlmdn_bench_localize")
    if bl is not None:  # its memmap cache is keyed by id(movie): ids are reused once this movie is freed
        bl._MEMMAPS.clear()
    return rows


def _chosen(row: dict[str, Any]) -> str:
    c = row.get("chosen") or {}
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in c.items())


def _f(x: Any, nd: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def markdown(results: dict[str, Any]) -> str:
    rows = results["rows"]
    pts = {p["name"]: p for p in results["points"]}
    out = [
        "| point | variant | recall % | precision % | Jaccard | RMSE nm | efficiency | chosen | locs | s |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        if "note" in r:
            out.append(f"| {r['point']} | {r['variant']} | {r['note']} | | | | | | | {r['seconds']:.0f} |")
            continue
        out.append(
            f"| {r['point']} | {r['variant']} | {_f(r['recall'])} | {_f(r['precision'])} | {_f(r['jaccard'])} | "
            f"{_f(r['rmse_nm'])} | {_f(r['efficiency'])} | {_chosen(r)} | {r['n_locs']} | {r['seconds']:.0f} |"
        )
    out += [
        "",
        "Summary per point: Jaccard (efficiency); gap = default - best smlmdn oracle (threshold or FDR swept); "
        "last column = default - Picasso's oracle.",
        "",
        "| point | conditions | raw default | raw oracle (threshold) | raw fdr oracle | gap | Picasso oracle | default - Picasso |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["point"], r["variant"]): r for r in rows if "note" not in r}
    n_gap = n_pic = n_both = n_pts = 0
    for name in dict.fromkeys(r["point"] for r in rows):
        d, p = by.get((name, "raw default")), by.get((name, "picasso oracle"))
        oracles = [o for o in (by.get((name, "raw oracle")), by.get((name, "raw fdr oracle"))) if o]

        def cell(r: dict[str, Any] | None, chosen: bool = False) -> str:
            if r is None:
                return "-"
            return f"{r['jaccard']:.1f} ({r['efficiency']:.1f})" + (f" @ {_chosen(r)}" if chosen else "")

        gap = d["jaccard"] - max(o["jaccard"] for o in oracles) if d and oracles else None
        vs = d["jaccard"] - p["jaccard"] if d and p else None
        if gap is not None:
            n_pts += 1
            n_gap += gap >= -1.0
        if vs is not None:
            n_pic += vs >= 0.0
            n_both += 1
        out.append(
            f"| {name} | {Point(**pts[name]).describe() if name in pts else ''} | {cell(d, True)} | "
            f"{cell(by.get((name, 'raw oracle')), True)} | {cell(by.get((name, 'raw fdr oracle')), True)} | {_f(gap)} | "
            f"{cell(p, True)} | {_f(vs)} |"
        )
    out += [
        "",
        f"Default within 1 Jaccard point of the best smlmdn oracle at {n_gap} of {n_pts} points; "
        f"default at or above Picasso's oracle at {n_pic} of {n_both} points.",
    ]
    return "\n".join(out)


def _code_state() -> str:
    """The git commit of the tree that ran, and the smlmdn/ files that differed from it."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=HERE.parent, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown commit"
    dirty = [ln[3:] for ln in git("status", "--porcelain", "--", "smlmdn").splitlines() if ln.strip()]
    return f"commit {head}" + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else "")


def write_results_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else ""
    block = f"{MARK_START}\n{text.rstrip()}\n{MARK_END}"
    if MARK_START in old and MARK_END in old:
        a, b = old.index(MARK_START), old.index(MARK_END) + len(MARK_END)
        new = old[:a] + block + old[b:]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def _set_constants(assignments: list[str]) -> dict[str, Any]:
    """Set ``MODULE.NAME=VALUE`` constants of ``smlmdn.localize.MODULE`` (an existing name, a value of its type).

    Returns name -> value as set; raises ValueError naming the problem.
    """
    import ast
    import importlib

    done: dict[str, Any] = {}
    for assignment in assignments:
        target, sep, text = assignment.partition("=")
        module_name, _, name = target.strip().rpartition(".")
        if not sep or not module_name or not name:
            raise ValueError(f"--set {assignment!r}: expected MODULE.NAME=VALUE, e.g. passes.REFINE_SWEEPS=8")
        try:
            module = importlib.import_module(f"smlmdn.localize.{module_name}")
        except ImportError:
            raise ValueError(f"--set {assignment!r}: no module smlmdn.localize.{module_name}") from None
        if not hasattr(module, name):
            raise ValueError(f"--set {assignment!r}: smlmdn.localize.{module_name} has no {name}")
        old = getattr(module, name)
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"--set {assignment!r}: {text!r} is not a Python literal") from None
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(old):
            raise ValueError(f"--set {assignment!r}: {name} is a {type(old).__name__}, got {type(value).__name__}")
        setattr(module, name, value)
        done[f"{module_name}.{name}"] = value
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--points",
        default=None,
        help="comma-separated point names (default: all): " + ", ".join(p.name for p in POINTS),
    )
    ap.add_argument(
        "--variants", default=None, help="comma-separated variant names (default: all): " + ", ".join(VARIANTS)
    )
    ap.add_argument("--frames", type=int, default=None, help="frames per movie (default 800; --quick 200)")
    ap.add_argument("--size", type=int, default=None, help="frame side in pixels (default 64; --quick 48)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small movies and short sweeps: a smoke test")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for numba/BLAS (default 1)")
    ap.add_argument("--json", type=Path, default=None, help="write all results (sweeps included) as JSON here")
    ap.add_argument(
        "--results", type=Path, default=None, help="write the Markdown into this file's localize_grid section"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODULE.NAME=VALUE",
        help="set a constant of smlmdn.localize.MODULE for this run (e.g. passes.REFINE_SWEEPS=8); repeatable, "
        "recorded in the results",
    )
    args = ap.parse_args(argv)
    try:
        settings = _set_constants(args.set)
    except ValueError as e:
        ap.error(str(e))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import dask

    dask.config.set(scheduler="synchronous")  # one thread: timings comparable, no oversubscription
    frames = args.frames or (200 if args.quick else 800)
    size = args.size or (48 if args.quick else 64)

    def pick(names: str | None, known: list[str], what: str) -> list[str]:
        if not names:
            return known
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        bad = [n for n in wanted if n not in known]
        if bad:
            ap.error(f"unknown {what} {', '.join(bad)}; known: {', '.join(known)}")
        return wanted

    points = [p for p in POINTS if p.name in pick(args.points, [p.name for p in POINTS], "point")]
    variants = {
        n: VARIANTS[n] for n in (pick(args.variants, list(VARIANTS), "variant") if args.variants else DEFAULT_VARIANTS)
    }

    from smlmdn import __version__
    from smlmdn.localize.pipeline import localize

    bl_version = None
    if "picasso oracle" in variants:
        bl_version = _bench_localize().picasso_version()[0]
    code = _code_state()
    try:
        python = os.path.relpath(sys.executable, HERE.parent)
    except ValueError:
        python = sys.executable
    python = python if not python.startswith("..") else "python"
    command = f"{python} benchmarks/localize_grid.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.system()}), threads {args.threads}",
        "smlmdn": __version__,
        "code": code,
        "picasso": bl_version,
        "localize_signature": str(inspect.signature(localize)),
        "settings": settings,
        "frames": frames,
        "size": size,
        "seed": args.seed,
        "quick": args.quick,
        "points": [asdict(p) for p in points],
        "rows": [],
    }
    t0 = time.perf_counter()
    for p in points:
        results["rows"] += run_point(p, variants, frames, size, args.seed, args.quick)
        if args.json:  # keep partial results of a long run
            args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
    results["seconds"] = time.perf_counter() - t0
    table = markdown(results)
    header = (
        f"## Localization over a grid of conditions (`benchmarks/localize_grid.py`)\n\n"
        f"Run {results['date']} on {results['machine']}; {results['seconds'] / 60:.1f} min in all. "
        f"smlmdn {results['smlmdn']} ({code}), Picasso {results['picasso'] or 'not run'}. Movies: {frames} frames of "
        f"{size} x {size} px (100 nm), filaments, seed {args.seed}.\n"
        f"Command: `{command}`\n"
    )
    print(header)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
    if args.results:
        write_results_section(args.results, header + "\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
