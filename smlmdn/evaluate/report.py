"""Assembling the answer to smlmdn's two questions: metric dicts, the written report and its figures.

1. How well does the denoiser denoise this movie?  -> :func:`denoise_metrics` (PSNR / SSIM against a
   noise-free movie when one exists, background SNR always).
2. Does denoising before localization improve the super-resolution result? -> :func:`localize_metrics`
   for the ``raw``, ``denoised`` and ``hybrid`` localization modes (matching scores with ground truth;
   count, CRLB precision, NeNA and FRC resolution always).

Functions here compute numbers from arrays / tables (metric dicts), turn a typed
:class:`~smlmdn.evaluate.compare_report.CompareReport` into Markdown text or rich tables, and draw
figures to a given path (matplotlib, Agg backend, written atomically). None of them prints. Numbers
that cannot be computed (no ground truth, empty table) are ``None``, so the report is valid JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..io import atomic_file
from .frc import FRC_THRESHOLD, frc_curve, frc_resolution
from .image import background_snr, psnr, signal_background_masks, ssim
from .match import match_localizations
from .precision import median_crlb_precision, nena_precision

if TYPE_CHECKING:
    from .compare_report import CompareReport

#: Keys of each ``report["denoise"][name]`` and ``report["localize"][mode]`` entry that need ground truth.
DENOISE_CLEAN_KEYS = ("psnr", "ssim")
LOCALIZE_TRUTH_KEYS = (
    "jaccard",
    "rmse_nm",
    "efficiency",
    "recall",
    "precision",
    "tp",
    "fp",
    "fn",
    "median_error_nm",
    "error_over_crlb",
)
#: Median of |d| / sigma for a 2D Gaussian error with standard deviation sigma per axis (Rayleigh median).
RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))
#: A difference in efficiency (or Jaccard) below this many percentage points is called "no clear difference".
CLEAR_POINTS = 1.0
#: A PSNR gain below this many dB is called "little".
CLEAR_DB = 0.5

ESTIMATE_LABELS = {
    "raw": "raw photons",
    "mean": "posterior mean",
    "map": "posterior MAP",
    "prior": "prior mean only (N2V-like)",
    "std": "posterior std",
}


def json_number(value: Any) -> float | int | None:
    """``value`` as a JSON-safe number: nan/inf/None -> None, numpy scalars -> Python."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------ numbers


def make_masks(
    raw_photons: Any, truth: pd.DataFrame | None, pixel_size_nm: float, psf_sigma_nm: float
) -> tuple[Any, Any]:
    """(signal, background) masks for background SNR, made once on the *raw* photons (T, Y, X).

    From the true emitter positions when ``truth`` is given, else from peaks found in the raw data
    (see :func:`smlmdn.evaluate.image.signal_background_masks`). Every estimate is scored with the
    same masks, so no estimate chooses its own regions.
    """
    return signal_background_masks(raw_photons, truth=truth, pixel_size_nm=pixel_size_nm, psf_sigma_nm=psf_sigma_nm)


def denoise_metrics(
    image: Any, clean: Any | None, masks: tuple[Any, Any], data_range: float | None = None
) -> dict[str, Any]:
    """``{"psnr": dB, "ssim": 0-1, "bg_snr": unitless}`` of ``image`` (T, Y, X) photons.

    PSNR and SSIM are against ``clean`` (expected photons, same shape), with ``data_range`` (default:
    the clean movie's range; pass the same number for every estimate); ``None`` without ``clean``.
    ``bg_snr`` uses ``masks`` (see :func:`make_masks`). Dask input is streamed block by block.
    """
    out: dict[str, Any] = {"psnr": None, "ssim": None}
    if clean is not None:
        out["psnr"] = json_number(psnr(image, clean, data_range=data_range))
        out["ssim"] = json_number(ssim(image, clean, data_range=data_range))
    out["bg_snr"] = json_number(background_snr(image, masks))
    return out


def frc_block_frames(n_frames: int) -> int:
    """Frames per FRC block: ``n_frames // 20`` clipped to 10..100 (>= 20 blocks whenever possible).

    Whole blocks of consecutive frames go to one half, so a molecule seen in consecutive frames does
    not correlate the halves (the random per-localization split is optimistic for blinking data).
    """
    return int(min(100, max(10, n_frames // 20)))


def error_over_crlb(locs: pd.DataFrame, pairs: pd.DataFrame) -> float:
    """How honest the reported precision is: median over matched pairs of ``|error| / (RAYLEIGH_MEDIAN * s)``.

    ``s = sqrt((crlb_x^2 + crlb_y^2) / 2)`` per localization; ``pairs`` from
    :func:`smlmdn.evaluate.match.match_localizations`. 1 when the errors are Gaussian with the
    stated standard deviation, > 1 when the stated precision is optimistic. A median, so the few far
    matches of overlapping molecules do not dominate.
    """
    rows = locs.loc[pairs["loc_index"]]
    s = np.sqrt((rows["crlb_x_nm"].to_numpy() ** 2 + rows["crlb_y_nm"].to_numpy() ** 2) / 2.0)
    return float(np.nanmedian(pairs["distance_nm"].to_numpy() / (RAYLEIGH_MEDIAN * s)))


def localize_metrics(
    locs: pd.DataFrame,
    truth: pd.DataFrame | None,
    shape_px: tuple[int, int, int],
    pixel_size_nm: float,
    tolerance_nm: float = 250.0,
    render_pixel_nm: float = 5.0,
    seed: int = 0,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Scores of one localization table and its FRC curve.

    ``shape_px`` is the movie shape (T, Y, X). Always: ``n`` (localizations), ``median_crlb_nm``,
    ``nena_nm`` (NeNA), ``frc_nm`` (FRC resolution, block split of :func:`frc_block_frames` frames,
    histogram renders of ``render_pixel_nm``). With ``truth``: ``jaccard``, ``recall``,
    ``precision`` (%), ``rmse_nm``, ``efficiency`` (%), ``tp``, ``fp``, ``fn`` (matching within
    ``tolerance_nm``), ``median_error_nm`` (median distance of matched pairs) and
    ``error_over_crlb`` (:func:`error_over_crlb`, 1 = honest precision); these are ``None``
    without truth. Returns (scores, (frequency nm^-1, FRC)).
    """
    t, ny, nx = shape_px
    out: dict[str, Any] = dict.fromkeys(LOCALIZE_TRUTH_KEYS)
    if truth is not None:
        match = match_localizations(locs, truth, tolerance_nm=tolerance_nm)
        res = match.to_dict()
        out.update({k: res[k] for k in LOCALIZE_TRUTH_KEYS if k in res})
        # the RMSE is dominated by the few far matches (overlapping emitters); the median shows the typical error
        out["median_error_nm"] = json_number(np.median(match.pairs["distance_nm"])) if match.tp else None
        out["error_over_crlb"] = json_number(error_over_crlb(locs, match.pairs)) if match.tp else None
    out["n"] = len(locs)
    out["median_crlb_nm"] = json_number(median_crlb_precision(locs)) if len(locs) else None
    out["nena_nm"] = json_number(nena_precision(locs, pixel_size_nm=pixel_size_nm))
    block = frc_block_frames(t)
    freq, frc = frc_curve(
        locs, (ny, nx), pixel_size_nm, render_pixel_nm=render_pixel_nm, seed=seed, split="blocks", block_frames=block
    )
    out["frc_nm"] = json_number(frc_resolution(freq, frc))
    out["frc_block_frames"] = block
    return out, (freq, frc)


# ------------------------------------------------------------------------------------------ answers


def _fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.{digits}f}{unit}"


def best_estimate(denoise: dict[str, dict[str, Any]]) -> tuple[str | None, str]:
    """Return the best denoised estimate (not raw) and the metric that decided: PSNR if known, else background SNR."""
    names = [n for n in denoise if n != "raw"]
    for key in ("psnr", "bg_snr"):
        scored = [(denoise[n][key], n) for n in names if denoise[n].get(key) is not None]
        if scored:
            return max(scored)[1], key
    return None, ""


def answer_denoising(denoise: dict[str, dict[str, Any]]) -> str:
    """Plain-language answer to question 1, built from the numbers in ``denoise`` (see :func:`denoise_metrics`)."""
    raw = denoise.get("raw", {})
    best, key = best_estimate(denoise)
    if best is None:
        return "No denoised estimate could be scored."
    b = denoise[best]
    label = ESTIMATE_LABELS.get(best, best)
    if key == "psnr" and raw.get("psnr") is not None:
        gain = b["psnr"] - raw["psnr"]
        dssim = (b["ssim"] - raw["ssim"]) if b.get("ssim") is not None and raw.get("ssim") is not None else 0.0
        if gain >= CLEAR_DB and dssim >= 0:
            verdict = "Denoising clearly improves this movie"
        elif gain <= -CLEAR_DB and dssim <= 0:
            verdict = "Denoising makes this movie worse"
        elif abs(gain) < CLEAR_DB and abs(dssim) < 0.01:
            verdict = "Denoising barely changes this movie"
        else:
            verdict = f"Denoising gives mixed results here ({'higher' if gain > 0 else 'lower'} PSNR, {'higher' if dssim > 0 else 'lower'} SSIM)"
        text = (
            f"{verdict}: against the noise-free movie the {label} (the best estimate by PSNR) "
            f"reaches {b['psnr']:.1f} dB PSNR versus {raw['psnr']:.1f} dB for the raw photons ({gain:+.1f} dB), "
            f"SSIM {_fmt(b['ssim'], 3)} versus {_fmt(raw['ssim'], 3)}"
        )
        if b.get("bg_snr") is not None and raw.get("bg_snr") is not None:
            text += f", and background SNR {b['bg_snr']:.1f} versus {raw['bg_snr']:.1f}"
        others = [n for n in denoise if n not in ("raw", best) and denoise[n].get("psnr") is not None]
        if others:
            text += " (" + ", ".join(f"{ESTIMATE_LABELS.get(n, n)} {denoise[n]['psnr']:.1f} dB" for n in others) + ")"
        return text + "."
    ratio = (b["bg_snr"] / raw["bg_snr"]) if raw.get("bg_snr") else None
    text = (
        f"Without a noise-free reference only background SNR can be measured: the {label} has background SNR "
        f"{_fmt(b['bg_snr'])} versus {_fmt(raw.get('bg_snr'))} for the raw photons"
    )
    if ratio is not None:
        text += f" ({ratio:.1f}x)"
    if ratio is not None and ratio > 1:
        return text + (
            ". Background SNR rewards any smoothing, so this shows that the background noise went down "
            "relative to the spots, not that the molecules were kept intact; judge that from the crops and "
            "the localization results."
        )
    return text + ": the denoiser did not even raise the contrast of the spots over the background noise."


def _why(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Which of recall, precision and RMSE made mode ``a`` beat (or lose to) mode ``b``, in words."""
    return (
        f"Jaccard {_fmt(a['jaccard'])} % vs {_fmt(b['jaccard'])} %, recall {_fmt(a['recall'])} % vs {_fmt(b['recall'])} %, "
        f"precision {_fmt(a['precision'])} % vs {_fmt(b['precision'])} %, RMSE {_fmt(a['rmse_nm'])} nm vs {_fmt(b['rmse_nm'])} nm"
    )


def answer_localization(localize: dict[str, dict[str, Any]], has_truth: bool) -> str:
    """Plain-language answer to question 2, built from the numbers in ``localize`` (see :func:`localize_metrics`).

    Modes named ``raw`` or ``raw linked`` use no denoiser; every other mode does. With ground truth
    the best mode of each kind is compared by efficiency, and the best mode overall is recommended.
    """
    raws = [m for m in localize if m.split()[0] == "raw"]
    others = [m for m in localize if m.split()[0] != "raw"]
    if not raws or not others:
        return "Localization was not run in all modes, so question 2 cannot be answered."
    if has_truth:

        def score(m: str) -> float:
            v = localize[m].get("efficiency")
            return -math.inf if v is None else v

        raw_m, best = max(raws, key=score), max(others, key=score)
        r, b = localize[raw_m], localize[best]
        if r.get("efficiency") is None or b.get("efficiency") is None:
            return "The matching scores are undefined (no matched localizations), so question 2 cannot be answered."
        diff = b["efficiency"] - r["efficiency"]
        if diff >= CLEAR_POINTS:
            verdict = f"Yes: denoising before localization improves the result here. The {best} mode"
        elif diff <= -CLEAR_POINTS:
            verdict = (
                f"No: denoising before localization makes the result worse here. Even the best denoised mode ({best})"
            )
        else:
            verdict = f"Not clearly: the best denoised mode ({best}) is within {CLEAR_POINTS:g} point of the best raw mode; it"
        text = (
            f"{verdict} reaches efficiency {b['efficiency']:.1f} % versus {r['efficiency']:.1f} % for {raw_m} localization "
            f"({_why(b, r)})."
        )
        top = max(localize, key=score)
        text += f" Recommended here: the {top} mode (the highest efficiency, {localize[top]['efficiency']:.1f} %)."
        if "raw linked" in localize and "raw" in localize and localize["raw"].get("rmse_nm") is not None:
            text += (
                f" Linking each blink's frames and pooling their positions changes the raw mode's RMSE from "
                f"{_fmt(localize['raw']['rmse_nm'])} to {_fmt(localize['raw linked'].get('rmse_nm'))} nm."
            )
        return text
    parts = []
    for m, v in localize.items():
        parts.append(f"{m}: {v['n']} localizations, NeNA {_fmt(v.get('nena_nm'))} nm, FRC {_fmt(v.get('frc_nm'))} nm")
    fr = {m: v.get("frc_nm") for m, v in localize.items()}
    known = {m: v for m, v in fr.items() if v is not None}
    if "raw" in known and len(known) > 1:
        best = min((m for m in known if m != "raw"), key=lambda m: known[m])
        diff = known["raw"] - known[best]
        lead = (
            f"By FRC resolution, the {best} mode is {'sharper' if diff > 0 else 'not sharper'} than raw "
            f"({known[best]:.1f} nm vs {known['raw']:.1f} nm)"
        )
    else:
        lead = "FRC resolution could not be determined for every mode"
    return (
        f"{lead}; " + "; ".join(parts) + ". The denoised mode's NeNA is optimistic when the denoiser uses "
        "neighbouring frames (its localizations in adjacent frames share data). Without ground truth these numbers cannot tell real molecules from "
        "false detections: more localizations or a smaller NeNA is not proof of a better result; simulate a "
        "similar movie (`smlmdn simulate`) and run `smlmdn compare` with --truth to measure it."
    )


# ------------------------------------------------------------------------------------------ text


def _md_table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


DENOISE_COLUMNS = [("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 3), ("bg_snr", "background SNR", 2)]
LOCALIZE_COLUMNS = [
    ("n", "n", 0),
    ("jaccard", "Jaccard (%)", 1),
    ("recall", "recall (%)", 1),
    ("precision", "precision (%)", 1),
    ("rmse_nm", "RMSE (nm)", 1),
    ("efficiency", "efficiency (%)", 1),
    ("median_crlb_nm", "CRLB (nm)", 1),
    ("error_over_crlb", "error/CRLB", 2),
    ("nena_nm", "NeNA (nm)", 1),
    ("frc_nm", "FRC (nm)", 1),
]


SHORT_HEADERS = {
    "Jaccard (%)": "Jacc %",
    "recall (%)": "recall %",
    "precision (%)": "prec %",
    "RMSE (nm)": "RMSE nm",
    "efficiency (%)": "eff %",
    "CRLB (nm)": "CRLB nm",
    "NeNA (nm)": "NeNA nm",
    "FRC (nm)": "FRC nm",
    "background SNR": "bg SNR",
}


def _section(report: CompareReport, section: str) -> dict[str, dict[str, Any]]:
    """Return the ``"denoise"`` or ``"localize"`` rows of ``report`` as name -> {metric: value}."""
    rows = report.denoise if section == "denoise" else report.localize
    return {name: asdict(row) for name, row in rows.items()}


def table_rows(report: CompareReport, section: str, short: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the ``"denoise"`` or ``"localize"`` section as formatted strings (``short`` headers for terminals)."""
    cols = DENOISE_COLUMNS if section == "denoise" else LOCALIZE_COLUMNS
    first = "estimate" if section == "denoise" else "mode"
    header = [first] + [SHORT_HEADERS.get(c[1], c[1]) if short else c[1] for c in cols]
    rows = [[name] + [_fmt(v.get(k), d) for k, _, d in cols] for name, v in _section(report, section).items()]
    return header, rows


def _acceptance_text(s: dict[str, Any]) -> str:
    """How candidates were accepted, in words, from the report's settings."""
    if s.get("threshold") is not None:
        return (
            f"Candidates were accepted by the expert override: band-pass significance above {s['threshold']:g} on the image "
            f"they were proposed on, with no false-discovery control (on a denoised movie this number has no calibrated "
            f"meaning)."
        )
    return (
        f"In every mode a candidate is accepted by the same test on the raw photon counts ({s.get('acceptance')}; pooled "
        f"over {s.get('pool')} neighbouring frame(s) on each side), so a denoiser cannot add a localization the photons "
        f"do not support."
    )


def report_markdown(report: CompareReport) -> str:
    """Return the report as Markdown: the answers, both tables, the figures and how the numbers were made."""
    whole = report.to_dict()
    s = whole["settings"]
    inputs = whole["inputs"]
    lines = ["# smlmdn compare report", ""]
    t, ny, nx = (list(inputs.get("shape", [])) + ["?"] * 3)[:3]
    lines += [
        f"Movie: `{inputs.get('movie')}` ({t} frames of {ny} x {nx} px), "
        f"denoised by {inputs.get('denoiser')}. Ground truth: {'`' + str(inputs['truth']) + '`' if inputs.get('truth') else 'none'}; "
        f"noise-free movie: {'`' + str(inputs['clean']) + '`' if inputs.get('clean') else 'none'}.",
        "",
    ]
    lines += [
        "## Answers",
        "",
        f"**1. How well does denoising work?** {report.answers.denoising}",
        "",
        f"**2. Does denoising before localization help?** {report.answers.localization}",
        "",
    ]
    header, rows = table_rows(report, "denoise")
    lines += ["## Denoising", "", _md_table(rows, header), ""]
    masks = whole["masks"]
    psnr_note = (
        (
            f"PSNR and SSIM are against the noise-free movie (given in {inputs.get('clean_units') or 'detected'} photons"
            f"{'' if (inputs.get('clean_units') or 'detected') == 'detected' else ', converted to detected photons'}; "
            f"data range {_fmt(s.get('data_range'), 2)} detected photons, the same for every row). "
            + (f"{s['psnr_peak']}. " if s.get("psnr_peak") else "")
        )
        if s.get("data_range") is not None
        else "PSNR and SSIM need a noise-free movie (--clean). "
    )
    lines += [
        f"{psnr_note}Background SNR = (mean in signal regions - mean in background regions) / std in background regions, "
        f"with one set of regions for every row, taken from {masks.get('source', '?')}: signal = pixels within "
        f"2 PSF sigmas of an emitter, background = farther than 4 PSF sigmas from every emitter "
        f"({_fmt(masks.get('signal_fraction'), 3)} / {_fmt(masks.get('background_fraction'), 3)} of all pixels).",
        "",
    ]
    header, rows = table_rows(report, "localize")
    lines += ["## Localization", "", _md_table(rows, header), ""]
    lines += [
        f"Modes: raw = propose candidates on and fit the raw photons; denoised = propose on and fit the denoised movie "
        f"({s.get('localize_estimate')}; its fit's likelihood and CRLB are not calibrated: see error/CRLB); hybrid = propose on "
        f"the denoised movie, fit the raw photons. {_acceptance_text(s)} '<mode> linked' scores the same localizations at the pooled position "
        f"of their blink (linked across consecutive frames within {s.get('link_distance_nm')} nm, inverse-variance weighted). "
        f"Same settings for all: box {s.get('box')} px, PSF sigma {s.get('psf_sigma_nm')} nm. "
        f"error/CRLB = median matched error over the stated precision (1 = honest, > 1 = optimistic). "
        f"Matching: per frame, Hungarian, within {s.get('tolerance_nm')} nm; efficiency = 100 - sqrt((100 - Jaccard)^2 + (1 %/nm x RMSE)^2). "
        f"CRLB = median Cramer-Rao bound; NeNA = nearest-neighbour-in-adjacent-frames precision (optimistic for the denoised "
        f"mode when the denoiser uses neighbouring frames, which makes adjacent frames share data); FRC = Fourier ring "
        f"correlation resolution (1/7 threshold) of histogram renders ({s.get('frc_render_pixel_nm')} nm pixels) of two halves made "
        f"of random blocks of {whole['localize'].get('raw', {}).get('frc_block_frames', '?')} consecutive frames.",
        "",
    ]
    figs = report.figures
    if figs:
        lines += ["## Figures", ""]
        for key, name in figs.items():
            if not key.startswith("render_"):
                lines += [f"![{key}]({name})", ""]
        singles = [name for key, name in figs.items() if key.startswith("render_")]
        if singles:
            lines += ["Full-size renders: " + ", ".join(f"[{n}]({n})" for n in singles) + ".", ""]
    prov = report.provenance
    lines += [
        "## Provenance",
        "",
        f"smlmdn {prov.get('smlmdn_version')}; command: `{prov.get('command')}`; camera: {report.camera}",
        "",
    ]
    return "\n".join(lines)


def rich_tables(report: CompareReport) -> list[Any]:
    """Return the two summary tables as ``rich.table.Table`` objects (for printing by the CLI)."""
    from rich.table import Table

    out = []
    for section, title in (
        ("denoise", "Denoising (vs noise-free movie; background SNR on fixed regions)"),
        ("localize", "Localization (same settings in every mode)"),
    ):
        header, rows = table_rows(report, section, short=True)
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*r)
        out.append(table)
    return out


# ------------------------------------------------------------------------------------------ figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, overwrite: bool) -> Path:
    plt = _pyplot()
    with atomic_file(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def pick_frames(raw_photons: Any, truth: pd.DataFrame | None, n: int = 3) -> list[int]:
    """``n`` frames worth showing: most true emitters, else the highest 99.9th-percentile of a frame sample."""
    t = raw_photons.shape[0]
    if truth is not None and len(truth):
        counts = truth["frame"].value_counts()
        counts = counts[(counts.index >= 0) & (counts.index < t)]
        if len(counts):
            return sorted(int(f) for f in counts.sort_values(ascending=False, kind="stable").index[:n])
    idx = np.unique(np.linspace(0, t - 1, min(t, 64)).astype(int))
    sample = np.asarray(raw_photons[idx].compute() if hasattr(raw_photons, "compute") else raw_photons[idx])
    score = np.percentile(sample.reshape(len(idx), -1), 99.9, axis=1)
    return sorted(int(idx[i]) for i in np.argsort(-score, kind="stable")[:n])


def crop_window(shape_yx: tuple[int, int], frame_images: np.ndarray, size: int = 48) -> tuple[slice, slice]:
    """Return a ``size`` px square (whole frame if smaller) centred on the brightest pixel of the summed frames."""
    ny, nx = shape_yx
    if ny <= size and nx <= size:
        return slice(0, ny), slice(0, nx)
    total = np.asarray(frame_images, dtype=np.float64).sum(axis=0)
    cy, cx = np.unravel_index(int(np.argmax(total)), total.shape)
    y0 = int(min(max(cy - size // 2, 0), max(ny - size, 0)))
    x0 = int(min(max(cx - size // 2, 0), max(nx - size, 0)))
    return slice(y0, min(y0 + size, ny)), slice(x0, min(x0 + size, nx))


def figure_crops(
    frames: list[int],
    images: dict[str, np.ndarray],
    path: str | Path,
    overwrite: bool = False,
    pixel_size_nm: float | None = None,
) -> Path:
    """Raw vs denoised crops of the same frames: rows = frames, columns = ``images`` (name -> (F, y, x) photons).

    Each row shares one colour scale (min..99.9th percentile of the raw crop), so brightness compares.
    """
    plt = _pyplot()
    names = list(images)
    fig, axes = plt.subplots(len(frames), len(names), figsize=(2.3 * len(names), 2.3 * len(frames)), squeeze=False)
    for r, f in enumerate(frames):
        ref = images.get("raw", images[names[0]])[r]
        vmin, vmax = float(np.min(ref)), float(np.percentile(ref, 99.9))
        vmax = vmax if vmax > vmin else vmin + 1.0
        for c, name in enumerate(names):
            ax = axes[r, c]
            ax.imshow(images[name][r], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(ESTIMATE_LABELS.get(name, name), fontsize=9)
            if c == 0:
                ax.set_ylabel(f"frame {f}", fontsize=9)
    fig.suptitle("same frames, same colour scale per row (photons)", fontsize=10)
    return _save(fig, path, overwrite)


def figure_renders(
    renders: dict[str, np.ndarray],
    path: str | Path,
    render_pixel_nm: float,
    overwrite: bool = False,
    percentile: float = 99.5,
) -> Path:
    """Super-resolution renders side by side (name -> (Ys, Xs) image), each scaled 0..``percentile`` of its non-zero pixels."""
    plt = _pyplot()
    names = list(renders)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        img = renders[name]
        nz = img[img > 0]
        vmax = float(np.percentile(nz, percentile)) if nz.size else 1.0
        ax.imshow(img, cmap="hot", vmin=0, vmax=vmax if vmax > 0 else 1.0, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"super-resolution renders ({render_pixel_nm:g} nm pixels; each blurred by its median CRLB, truth by one pixel)",
        fontsize=10,
    )
    return _save(fig, path, overwrite)


def figure_metrics(report: CompareReport, path: str | Path, overwrite: bool = False) -> Path:
    """Bar charts of the report's numbers: denoising metrics per estimate and localization metrics per mode."""
    plt = _pyplot()
    den, loc = _section(report, "denoise"), _section(report, "localize")
    panels: list[tuple[str, dict[str, Any], str]] = []
    for key, label, _ in DENOISE_COLUMNS:
        if any(v.get(key) is not None for v in den.values()):
            panels.append((f"denoise: {label}", {n: v.get(key) for n, v in den.items()}, "higher is better"))
    truth_keys = [("jaccard", "Jaccard (%)"), ("rmse_nm", "RMSE (nm)"), ("efficiency", "efficiency (%)")]
    free_keys = [("n", "localizations"), ("nena_nm", "NeNA (nm)"), ("frc_nm", "FRC resolution (nm)")]
    for key, label in truth_keys + free_keys:
        if any(v.get(key) is not None for v in loc.values()):
            better = (
                "lower is better"
                if key in ("rmse_nm", "nena_nm", "frc_nm")
                else ("" if key == "n" else "higher is better")
            )
            panels.append((f"localize: {label}", {m: v.get(key) for m, v in loc.items()}, better))
    ncol = 3
    nrow = max(1, math.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol, 2.8 * nrow), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, values, better) in zip(axes.ravel(), panels, strict=False):
        names = list(values)
        heights = [values[n] if values[n] is not None else 0.0 for n in names]
        bars = ax.bar(range(len(names)), heights, color=[colours[i % len(colours)] for i in range(len(names))])
        for bar, n in zip(bars, names, strict=True):
            v = values[n]
            ax.annotate(
                "n/a" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=8, rotation=15)
        ax.set_title(f"{title}\n({better})" if better else title, fontsize=9)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, overwrite)


def figure_frc(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    resolutions: dict[str, float | None],
    path: str | Path,
    overwrite: bool = False,
) -> Path:
    """FRC curves (name -> (frequency nm^-1, FRC)) with the 1/7 threshold and each resolution in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (freq, frc) in curves.items():
        res = resolutions.get(name)
        ax.plot(freq, frc, label=f"{name}: {'n/a' if res is None else f'{res:.1f} nm'}")
    ax.axhline(FRC_THRESHOLD, color="k", lw=0.8, ls="--", label="1/7 threshold")
    ax.set_xlabel("spatial frequency (1/nm)")
    ax.set_ylabel("FRC")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Fourier ring correlation (halves = random blocks of frames)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, overwrite)
