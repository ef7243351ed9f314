"""Matching localizations to ground truth: exact scores on hand-made tables."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from smlmdn.errors import SmlmdnError
from smlmdn.evaluate.match import MatchResult, match_localizations


def table(rows):
    return pd.DataFrame(rows, columns=["frame", "x_nm", "y_nm"])


def test_known_tp_fp_fn_give_exact_scores():
    truth = table([(0, 0, 0), (0, 1000, 0), (0, 5000, 5000), (1, 0, 0)])
    locs = table(
        [
            (0, 30, 40),  # 50 nm from truth (0, 0): TP
            (0, 1000, 120),  # 120 nm from truth (1000, 0): TP
            (0, 3000, 3000),  # nothing within 250 nm: FP
            (2, 0, 0),  # right place, wrong frame (no truth in frame 2): FP
        ]
    )
    res = match_localizations(locs, truth, tolerance_nm=250.0)
    assert isinstance(res, MatchResult)
    assert (res.tp, res.fp, res.fn, res.n) == (2, 2, 2, 4)
    assert res.jaccard == pytest.approx(100 * 2 / 6)
    assert res.recall == pytest.approx(50.0)
    assert res.precision == pytest.approx(50.0)
    rmse = math.sqrt((50**2 + 120**2) / 2)
    assert res.rmse_nm == pytest.approx(rmse)
    assert res.efficiency == pytest.approx(100 - math.sqrt((100 - 100 * 2 / 6) ** 2 + rmse**2))
    assert sorted(res.pairs["distance_nm"].round(9)) == [50.0, 120.0]


def test_hungarian_beats_greedy():
    # Greedy nearest-first takes L1-T1 (100 nm) and leaves L2 unmatched (T2 is 440 nm away);
    # the optimal assignment matches both: L1-T2 (140 nm) and L2-T1 (200 nm).
    truth = table([(0, 0, 0), (0, 240, 0)])
    locs = table([(0, 100, 0), (0, -200, 0)])
    res = match_localizations(locs, truth)
    assert (res.tp, res.fp, res.fn) == (2, 0, 0)
    assert res.rmse_nm == pytest.approx(math.sqrt((140**2 + 200**2) / 2))
    pairs = dict(zip(res.pairs["loc_index"], res.pairs["truth_index"], strict=True))
    assert pairs == {0: 1, 1: 0}


def test_tolerance_boundary_is_inclusive():
    truth = table([(0, 0, 0), (1, 0, 0)])
    locs = table([(0, 150, 200), (1, 150, 200.01)])  # exactly 250 nm, and just beyond
    res = match_localizations(locs, truth, tolerance_nm=250.0)
    assert (res.tp, res.fp, res.fn) == (1, 1, 1)
    assert res.pairs["frame"].tolist() == [0]
    assert res.pairs["distance_nm"].iloc[0] == pytest.approx(250.0)


def test_empty_inputs_have_defined_scores():
    empty = table([])
    truth = table([(0, 0, 0), (3, 10, 10)])
    none_found = match_localizations(empty, truth)
    assert (none_found.tp, none_found.fp, none_found.fn) == (0, 0, 2)
    assert none_found.jaccard == 0 and none_found.recall == 0 and math.isnan(none_found.rmse_nm)
    d = none_found.to_dict()
    assert d["rmse_nm"] is None and d["precision"] is None and d["jaccard"] == 0.0 and d["efficiency"] == 0.0
    both = match_localizations(empty, empty).to_dict()
    assert both["jaccard"] == 0.0 and both["rmse_nm"] is None and both["recall"] is None and both["n"] == 0
    no_truth = match_localizations(truth, empty)
    assert (no_truth.tp, no_truth.fp, no_truth.fn) == (0, 2, 0) and no_truth.precision == 0
    assert len(no_truth.pairs) == 0 and "distance_nm" in no_truth.pairs.columns


def test_pairs_use_index_labels():
    truth = table([(0, 0, 0)]).set_axis([7])
    locs = table([(0, 10, 0)]).set_axis([42])
    res = match_localizations(locs, truth)
    assert res.pairs[["loc_index", "truth_index"]].values.tolist() == [[42, 7]]
    assert res.pairs["dx_nm"].iloc[0] == pytest.approx(10.0)


def test_matches_brute_force_per_frame_hungarian():
    rng = np.random.default_rng(0)
    n_t, n_l, frames, tol = 300, 330, 15, 250.0
    truth = pd.DataFrame(
        {"frame": rng.integers(0, frames, n_t), "x_nm": rng.random(n_t) * 2000, "y_nm": rng.random(n_t) * 2000}
    )
    locs = pd.DataFrame(
        {"frame": rng.integers(0, frames, n_l), "x_nm": rng.random(n_l) * 2000, "y_nm": rng.random(n_l) * 2000}
    )
    res = match_localizations(locs, truth, tolerance_nm=tol)
    tp, total = 0, 0.0
    for f in range(frames):
        lf, tf = locs[locs.frame == f], truth[truth.frame == f]
        if len(lf) == 0 or len(tf) == 0:
            continue
        d = np.hypot(lf.x_nm.values[:, None] - tf.x_nm.values[None], lf.y_nm.values[:, None] - tf.y_nm.values[None])
        cost = np.where(d <= tol, d, 1e9)
        r, c = linear_sum_assignment(cost)
        ok = d[r, c] <= tol
        tp += int(ok.sum())
        total += float(d[r, c][ok].sum())
    assert res.tp == tp and res.tp > 50  # dense enough that components with several pairs occur
    assert res.pairs["distance_nm"].sum() == pytest.approx(total)
    assert res.pairs["loc_index"].is_unique and res.pairs["truth_index"].is_unique


def test_bad_tables_raise_smlmdn_error():
    with pytest.raises(SmlmdnError, match="x_nm"):
        match_localizations(pd.DataFrame({"frame": [0], "x": [1.0], "y_nm": [1.0]}), table([(0, 0, 0)]))
    with pytest.raises(SmlmdnError, match="tolerance"):
        match_localizations(table([(0, 0, 0)]), table([(0, 0, 0)]), tolerance_nm=0)
    with pytest.raises(SmlmdnError, match="NaN"):
        match_localizations(table([(0, np.nan, 0)]), table([(0, 0, 0)]))
