"""The typed result of ``smlmdn compare``: the report as frozen dataclasses.

:class:`CompareReport` is what :func:`smlmdn.compare.compare` returns and what the Markdown, terminal
and figure writers of :mod:`smlmdn.evaluate.report` take. :meth:`CompareReport.to_dict` is
``report.json`` (its keys and their order are the file's format, pinned by the tests) and
:meth:`CompareReport.from_dict` reads one back. Numbers that cannot be computed (no ground truth,
empty table) are ``None``, so the dict is valid JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageScore:
    """Question 1 for one image (the raw photons or one estimate); see :func:`~smlmdn.evaluate.report.denoise_metrics`.

    ``psnr`` (dB) and ``ssim`` (0-1) against the noise-free movie, None without one; ``bg_snr``
    (unitless) on the report's signal/background regions.
    """

    psnr: float | None = None
    ssim: float | None = None
    bg_snr: float | None = None


@dataclass(frozen=True)
class LocalizationScore:
    """Question 2 for one localization mode (or its linked rows); see :func:`~smlmdn.evaluate.report.localize_metrics`.

    With ground truth: ``jaccard``, ``recall``, ``precision``, ``efficiency`` (%), ``rmse_nm``,
    ``median_error_nm`` (nm), ``tp``/``fp``/``fn`` (counts) and ``error_over_crlb`` (1 = honest
    precision); None without truth. Always: ``n`` localizations, ``median_crlb_nm``, ``nena_nm``
    (None for linked rows), ``frc_nm`` (nm; None when undetermined) and ``frc_block_frames``; the
    localization table's counts (``n_candidates`` ... ``n_tracks``, ``n_extended``), None when the table lacks them.
    """

    jaccard: float | None = None
    rmse_nm: float | None = None
    efficiency: float | None = None
    recall: float | None = None
    precision: float | None = None
    tp: int | None = None
    fp: int | None = None
    fn: int | None = None
    median_error_nm: float | None = None
    error_over_crlb: float | None = None
    n: int = 0
    median_crlb_nm: float | None = None
    nena_nm: float | None = None
    frc_nm: float | None = None
    frc_block_frames: int | None = None
    n_candidates: int | None = None
    n_rejected: int | None = None
    n_dropped_nonconverged: int | None = None
    n_dropped_outside: int | None = None
    n_saturated: int | None = None
    n_tracks: int | None = None
    n_extended: int | None = None


@dataclass(frozen=True)
class Answers:
    """The plain-language answers, made from the numbers (:func:`~smlmdn.evaluate.report.answer_denoising`, ``answer_localization``).

    ``localization`` ends with the recommended mode when there is ground truth.
    """

    denoising: str
    localization: str


@dataclass(frozen=True)
class ReportInputs:
    """What was compared: the movie (path or ``"(array)"``), its ``shape`` (T, Y, X) and ``units``.

    ``truth`` / ``clean``: their paths (``"(table)"`` / ``"(array)"`` when given as data, None when
    absent); ``clean_units``: the clean movie's units (None without one); ``denoiser``: the model
    path or ``"a denoised movie"``. With a model: ``model``, ``model_hash`` and ``training`` (steps,
    seconds, best_val_loss, stopped, device); with denoised movies: ``denoised`` (estimate -> path).
    """

    movie: str
    shape: tuple[int, int, int]
    units: str
    truth: str | None
    clean: str | None
    clean_units: str | None
    denoiser: str
    model: str | None = None
    model_hash: str | None = None
    training: dict[str, Any] | None = None
    denoised: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the ``inputs`` section of ``report.json`` (model keys or ``denoised``, whichever was given)."""
        out: dict[str, Any] = {
            "movie": self.movie,
            "shape": list(self.shape),
            "units": self.units,
            "truth": self.truth,
            "clean": self.clean,
            "clean_units": self.clean_units,
            "denoiser": self.denoiser,
        }
        if self.model is not None:
            out.update(model=self.model, model_hash=self.model_hash, training=self.training)
        else:
            out["denoised"] = self.denoised
        return out


@dataclass(frozen=True)
class ReportSettings:
    """How the numbers were made: the comparison's and the localization's settings, as the report states them.

    Units: ``tolerance_nm``, ``psf_sigma_nm``, ``link_distance_nm``, ``render_pixel_nm``,
    ``frc_render_pixel_nm`` in nm; ``box`` in px; ``data_range``: the PSNR peak in detected photons
    (None without a clean movie); ``acceptance``: the acceptance test in words; ``psnr_peak``: how
    PSNR's peak is chosen (None without a clean movie).
    """

    estimates: tuple[str, ...]
    localize_estimate: str
    tolerance_nm: float
    box: int
    psf_sigma_nm: float
    fit_sigma: bool
    threshold: float | None
    acceptance: str | None
    fdr: float
    pool: int
    link_distance_nm: float
    render_pixel_nm: float
    frc_render_pixel_nm: float
    frc_split: str
    data_range: float | None
    psnr_peak: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the ``settings`` section of ``report.json``."""
        return {**asdict(self), "estimates": list(self.estimates)}


@dataclass(frozen=True)
class MaskRegions:
    """The background-SNR regions: where they came from (``source``) and the fraction of all pixels in each."""

    source: str
    signal_fraction: float | None
    background_fraction: float | None


@dataclass(frozen=True)
class CompareReport:
    """The answer to both questions for one movie, as written to ``report.json`` and ``report.md``.

    ``denoise``: image name (``raw`` and each estimate) -> :class:`ImageScore`; ``localize``: row
    name (each mode and ``"<mode> linked"``) -> :class:`LocalizationScore`; ``answers``; what was
    compared (``inputs``) and how (``settings``, ``masks``, ``camera`` numbers); ``provenance``;
    ``figures``: figure key -> file name in the report folder; ``timing_s``: seconds per stage;
    ``report_dir``: the report folder (not part of ``report.json``).
    """

    denoise: dict[str, ImageScore]
    localize: dict[str, LocalizationScore]
    answers: Answers
    inputs: ReportInputs
    settings: ReportSettings
    masks: MaskRegions
    camera: dict[str, Any]
    provenance: dict[str, Any]
    figures: dict[str, str] = field(default_factory=dict)
    timing_s: dict[str, float] = field(default_factory=dict)
    report_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return ``report.json``'s contents (every key but ``report_dir``), JSON-ready."""
        return {
            "denoise": {name: asdict(score) for name, score in self.denoise.items()},
            "localize": {name: asdict(score) for name, score in self.localize.items()},
            "answers": asdict(self.answers),
            "inputs": self.inputs.to_dict(),
            "settings": self.settings.to_dict(),
            "masks": asdict(self.masks),
            "camera": dict(self.camera),
            "provenance": dict(self.provenance),
            "figures": dict(self.figures),
            "timing_s": dict(self.timing_s),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], report_dir: str | Path | None = None) -> CompareReport:
        """Read a report back from ``report.json``'s contents (raises TypeError/KeyError for another layout)."""
        settings = dict(data["settings"])
        inputs = dict(data["inputs"])
        return cls(
            denoise={name: ImageScore(**row) for name, row in data["denoise"].items()},
            localize={name: LocalizationScore(**row) for name, row in data["localize"].items()},
            answers=Answers(**data["answers"]),
            inputs=ReportInputs(**{**inputs, "shape": tuple(inputs["shape"])}),
            settings=ReportSettings(**{**settings, "estimates": tuple(settings["estimates"])}),
            masks=MaskRegions(**data["masks"]),
            camera=dict(data["camera"]),
            provenance=dict(data["provenance"]),
            figures=dict(data.get("figures", {})),
            timing_s=dict(data.get("timing_s", {})),
            report_dir=Path(report_dir) if report_dir is not None else None,
        )
