"""Match localizations to ground truth (SMLM challenge, Sage et al. 2015/2019) and score them.

Matching is done frame by frame: within a frame, localizations and true emitters are paired by the
Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on their lateral distance matrix, where
pairs farther apart than the tolerance may not be matched. The assignment maximises the number of
matched pairs and, among those, minimises the summed distance (out-of-tolerance entries get a cost
larger than any possible sum of in-tolerance distances).

Speed: instead of one Hungarian problem per frame, all candidate pairs within the tolerance are found
at once with a k-d tree (frames are separated along a third coordinate so pairs never cross frames),
and the bipartite graph of candidate pairs is split into connected components. Components are
independent assignment problems, so the result equals per-frame Hungarian matching. Components with
a single localization or a single true emitter (the usual case at SMLM densities) have one match,
their shortest edge, and are resolved without any Python loop; the Hungarian algorithm runs only on
the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..errors import SmlmdnError

ALPHA_PERCENT_PER_NM = 1.0  # efficiency weight of RMSE, SMLM challenge 2019 (2D)

PAIR_COLUMNS = ["loc_index", "truth_index", "frame", "dx_nm", "dy_nm", "distance_nm"]


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else value


@dataclass
class MatchResult:
    """Scores of a localization table against ground truth.

    ``recall``, ``precision`` and ``jaccard`` are in percent (0-100); ``rmse_nm`` is the lateral RMSE
    ``sqrt(mean(dx^2 + dy^2))`` over matched pairs in nm (nan if there are none); ``efficiency`` is the
    SMLM challenge 2019 2D efficiency in percent. ``n`` is the number of localizations (= tp + fp) and
    ``pairs`` has one row per match: ``loc_index`` / ``truth_index`` (index labels of the input
    tables), ``frame``, ``dx_nm``, ``dy_nm`` (localization minus truth) and ``distance_nm``.
    """

    tp: int
    fp: int
    fn: int
    recall: float
    precision: float
    jaccard: float
    rmse_nm: float
    efficiency: float
    n: int
    tolerance_nm: float
    pairs: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the scalar scores as a JSON-safe dict (nan/inf -> None); ``pairs`` is left out."""
        return {
            "tp": int(self.tp),
            "fp": int(self.fp),
            "fn": int(self.fn),
            "recall": _json_float(self.recall),
            "precision": _json_float(self.precision),
            "jaccard": _json_float(self.jaccard),
            "rmse_nm": _json_float(self.rmse_nm),
            "efficiency": _json_float(self.efficiency),
            "n": int(self.n),
            "tolerance_nm": _json_float(self.tolerance_nm),
        }


def efficiency(jaccard: float, rmse_nm: float, alpha: float = ALPHA_PERCENT_PER_NM) -> float:
    """SMLM challenge 2019 2D efficiency ``100 - sqrt((100 - J)^2 + alpha^2 RMSE^2)`` in percent.

    ``jaccard`` in percent, ``rmse_nm`` in nm, ``alpha`` in %/nm. With no matched pairs the RMSE is
    undefined (nan); the RMSE term is then taken as 0, so the efficiency equals the Jaccard index (0).
    """
    rmse_term = 0.0 if not math.isfinite(rmse_nm) else (alpha * rmse_nm) ** 2
    return 100.0 - math.sqrt((100.0 - jaccard) ** 2 + rmse_term)


def _check_table(df: pd.DataFrame, name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise SmlmdnError(
            f"{name} must be a table (pandas DataFrame), got {type(df).__name__}",
            "pass a DataFrame with columns frame, x_nm, y_nm",
        )
    missing = [c for c in ("frame", "x_nm", "y_nm") if c not in df.columns]
    if missing:
        raise SmlmdnError(
            f"{name} table lacks column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})",
            "give a table with columns frame, x_nm, y_nm (nm, frames 0-based)",
        )
    if len(df) and not np.isfinite(df[["frame", "x_nm", "y_nm"]].to_numpy(dtype=float)).all():
        raise SmlmdnError(
            f"{name} table has NaN or infinite frame/x_nm/y_nm values",
            "drop rows with missing coordinates before matching",
        )


def _candidate_pairs(f_l, x_l, y_l, f_t, x_t, y_t, tol):
    """All (loc, truth) position pairs in the same frame within ``tol`` nm: (i, j) int arrays."""
    # Frames are separated along a third axis by more than the tolerance, so no pair crosses frames.
    sep = 4.0 * tol + 1.0
    f0 = min(f_l.min(), f_t.min())
    pl = np.column_stack([x_l, y_l, (f_l - f0) * sep])
    pt = np.column_stack([x_t, y_t, (f_t - f0) * sep])
    tree_l, tree_t = cKDTree(pl), cKDTree(pt)
    sdm = tree_l.sparse_distance_matrix(tree_t, max_distance=tol * (1 + 1e-9) + 1e-9, output_type="coo_matrix")
    i, j = sdm.row.astype(np.int64), sdm.col.astype(np.int64)
    keep = f_l[i] == f_t[j]  # guard; the separation already guarantees it
    i, j = i[keep], j[keep]
    d = np.hypot(x_l[i] - x_t[j], y_l[i] - y_t[j])
    keep = d <= tol
    return i[keep], j[keep], d[keep]


def _first_per_group(group: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Positions of the smallest ``key`` in each group (ties: first)."""
    order = np.lexsort((key, group))
    g = group[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


def _local_rank(comp: np.ndarray, node: np.ndarray) -> np.ndarray:
    """For each edge, the 0-based rank of its ``node`` among the distinct nodes of its component."""
    order = np.lexsort((node, comp))
    c, n = comp[order], node[order]
    new_comp = np.ones(len(c), dtype=bool)
    new_comp[1:] = c[1:] != c[:-1]
    new_node = new_comp.copy()
    new_node[1:] |= n[1:] != n[:-1]
    g = np.cumsum(new_node) - 1
    start = np.maximum.accumulate(np.where(new_comp, g, 0))
    rank = np.empty(len(c), dtype=np.int64)
    rank[order] = g - start
    return rank


def _assign(i, j, d, n_l, n_t, tol):
    """Optimal assignment on the candidate graph, component by component; returns matched (i, j)."""
    if len(i) == 0:
        return i, j
    graph = coo_matrix((np.ones(len(i)), (i, n_l + j)), shape=(n_l + n_t, n_l + n_t))
    n_comp, labels = connected_components(graph, directed=False)
    comp = labels[i]
    # Number of distinct localizations / truths per component (each node belongs to one component).
    has_l, has_t = np.zeros(n_l, dtype=bool), np.zeros(n_t, dtype=bool)
    has_l[i], has_t[j] = True, True
    n_locs = np.bincount(labels[:n_l][has_l], minlength=n_comp)
    n_truth = np.bincount(labels[n_l:][has_t], minlength=n_comp)
    # A star (one localization or one truth in the component) has a single match: its shortest edge.
    # That covers isolated pairs too, i.e. nearly every component at SMLM densities, without a loop.
    star = (n_locs[comp] == 1) | (n_truth[comp] == 1)
    s_edges = np.flatnonzero(star)
    best = s_edges[_first_per_group(comp[s_edges], d[s_edges])]
    out_i, out_j = [i[best]], [j[best]]
    multi = np.flatnonzero(~star)
    if len(multi):
        order = multi[np.argsort(comp[multi], kind="stable")]
        ci, ii, jj, dd = comp[order], i[order], j[order], d[order]
        ri, rj = _local_rank(ci, ii), _local_rank(ci, jj)
        bounds = np.flatnonzero(np.diff(ci)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(ci)]
        big = tol * (len(i) + 1) + 1.0  # larger than any sum of in-tolerance distances
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            r_loc, c_loc = ri[a:b], rj[a:b]
            rows, cols = n_locs[ci[a]], n_truth[ci[a]]
            cost = np.full((rows, cols), big)
            cost[r_loc, c_loc] = dd[a:b]
            row_node, col_node = np.empty(rows, dtype=np.int64), np.empty(cols, dtype=np.int64)
            row_node[r_loc], col_node[c_loc] = ii[a:b], jj[a:b]
            r, c = linear_sum_assignment(cost)
            ok = cost[r, c] < big
            out_i.append(row_node[r[ok]])
            out_j.append(col_node[c[ok]])
    return np.concatenate(out_i), np.concatenate(out_j)


def match_localizations(locs: pd.DataFrame, truth: pd.DataFrame, tolerance_nm: float = 250.0) -> MatchResult:
    """Match ``locs`` to ``truth`` per frame (Hungarian, lateral distance <= ``tolerance_nm``) and score.

    Both tables need columns ``frame`` (0-based int), ``x_nm``, ``y_nm`` (nm); extra columns are ignored.
    A pair at exactly ``tolerance_nm`` counts as a match. Empty tables are allowed: with no
    localizations and no truth, tp = fp = fn = 0, Jaccard = 0, RMSE = nan; recall (no truth) and
    precision (no localizations) are nan where their denominator is 0.
    """
    _check_table(locs, "localization")
    _check_table(truth, "ground-truth")
    tol = float(tolerance_nm)
    if not math.isfinite(tol) or tol <= 0:
        raise SmlmdnError(
            f"matching tolerance must be a positive number of nm, got {tolerance_nm}", "use e.g. --tolerance 250"
        )
    n_l, n_t = len(locs), len(truth)
    f_l = locs["frame"].to_numpy(dtype=np.int64)
    x_l = locs["x_nm"].to_numpy(dtype=np.float64)
    y_l = locs["y_nm"].to_numpy(dtype=np.float64)
    f_t = truth["frame"].to_numpy(dtype=np.int64)
    x_t = truth["x_nm"].to_numpy(dtype=np.float64)
    y_t = truth["y_nm"].to_numpy(dtype=np.float64)

    if n_l and n_t:
        i, j, d = _candidate_pairs(f_l, x_l, y_l, f_t, x_t, y_t, tol)
        mi, mj = _assign(i, j, d, n_l, n_t, tol)
    else:
        mi = mj = np.zeros(0, dtype=np.int64)
    order = np.lexsort((mi, f_l[mi]))
    mi, mj = mi[order], mj[order]
    dx, dy = x_l[mi] - x_t[mj], y_l[mi] - y_t[mj]
    pairs = pd.DataFrame(
        {
            "loc_index": locs.index.to_numpy()[mi],
            "truth_index": truth.index.to_numpy()[mj],
            "frame": f_l[mi],
            "dx_nm": dx,
            "dy_nm": dy,
            "distance_nm": np.hypot(dx, dy),
        },
        columns=PAIR_COLUMNS,
    )

    tp = len(mi)
    fp, fn = n_l - tp, n_t - tp
    recall = 100.0 * tp / n_t if n_t else math.nan
    precision = 100.0 * tp / n_l if n_l else math.nan
    denom = tp + fp + fn
    jaccard = 100.0 * tp / denom if denom else 0.0
    rmse = math.sqrt(float(np.mean(dx**2 + dy**2))) if tp else math.nan
    return MatchResult(
        tp=tp,
        fp=fp,
        fn=fn,
        recall=recall,
        precision=precision,
        jaccard=jaccard,
        rmse_nm=rmse,
        efficiency=efficiency(jaccard, rmse),
        n=n_l,
        tolerance_nm=tol,
        pairs=pairs,
    )
