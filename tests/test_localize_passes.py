"""The test-and-fit passes' helpers: compiled box gathering equals numpy indexing."""

from __future__ import annotations

import numpy as np

from smlmdn.localize.passes import boxes


def test_boxes_equal_numpy_indexing_as_float64() -> None:
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(5, 20, 17)).astype(np.float32)
    t, oy, ox = rng.integers(0, 5, 50), rng.integers(0, 14, 50), rng.integers(0, 11, 50)
    ar = np.arange(7)

    got = boxes(frames, t, oy, ox, 7)

    want = frames[t[:, None, None], (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    assert boxes(frames, t[:0], oy[:0], ox[:0], 7).shape == (0, 7, 7)
