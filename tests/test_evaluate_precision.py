"""NeNA and CRLB precision."""

import math

import numpy as np
import pandas as pd
import pytest

from smlmdn.errors import SmlmdnError
from smlmdn.evaluate.precision import median_crlb_precision, nena_precision


def repeated_localizations(sigma_nm, seed=0, frames_on=20):
    """Emitters on a 600 nm grid, each localized in ``frames_on`` consecutive frames with ``sigma_nm``."""
    rng = np.random.default_rng(seed)
    g = np.arange(250.0, 5000.0, 600.0)
    ex, ey = (a.ravel() for a in np.meshgrid(g, g))
    parts = []
    for x0, y0 in zip(ex, ey, strict=True):
        f = np.arange(frames_on) + rng.integers(0, 100)
        parts.append(
            pd.DataFrame(
                {"frame": f, "x_nm": x0 + rng.normal(0, sigma_nm, f.size), "y_nm": y0 + rng.normal(0, sigma_nm, f.size)}
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("sigma", [10.0, 20.0])
def test_nena_recovers_simulated_precision(sigma):
    locs = repeated_localizations(sigma)
    assert nena_precision(locs, pixel_size_nm=100.0) == pytest.approx(sigma, rel=0.1)
    assert nena_precision(locs, linear_term=False) == pytest.approx(sigma, rel=0.1)


def test_nena_is_nan_without_repeated_localizations():
    locs = pd.DataFrame({"frame": np.arange(0, 200, 2), "x_nm": 0.0, "y_nm": 0.0})  # no adjacent frames
    assert math.isnan(nena_precision(locs))
    assert math.isnan(nena_precision(locs.iloc[:0]))


def test_median_crlb_precision():
    locs = pd.DataFrame({"crlb_x_nm": [3.0, 10.0, 30.0], "crlb_y_nm": [4.0, 10.0, 40.0]})
    assert median_crlb_precision(locs) == pytest.approx(10.0)
    assert median_crlb_precision(locs.iloc[:1]) == pytest.approx(math.sqrt(12.5))
    assert math.isnan(median_crlb_precision(locs.iloc[:0]))
    with pytest.raises(SmlmdnError, match="crlb_x_nm"):
        median_crlb_precision(pd.DataFrame({"x_nm": [1.0]}))
