"""Evaluation: matching to ground truth, image metrics, rendering, FRC and NeNA precision.

Pure functions: tables / arrays in, numbers / arrays out; nothing prints.
"""

from .frc import frc_curve, frc_resolution
from .image import background_snr, psnr, signal_background_masks, ssim
from .match import MatchResult, match_localizations
from .precision import median_crlb_precision, nena_precision
from .render import render_image, save_render_png, save_render_tif

__all__ = [
    "MatchResult",
    "background_snr",
    "frc_curve",
    "frc_resolution",
    "match_localizations",
    "median_crlb_precision",
    "nena_precision",
    "psnr",
    "render_image",
    "save_render_png",
    "save_render_tif",
    "signal_background_masks",
    "ssim",
]
