"""Drift statistics from binned counts and CDFs: what Spark aggregates, the driver finishes.

Nothing here sees raw rows: numeric features arrive as counts per reference-quantile bin (PSI,
Jensen-Shannon) and as counts at a grid of pooled quantiles plus evenly spaced points (Kolmogorov-Smirnov, Wasserstein);
categorical ones as counts per category (chi-squared, Jensen-Shannon).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4  # floor for empty bins: PSI is undefined at 0


def _shares(counts) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    return c / c.sum() if c.sum() > 0 else c


def psi(reference_counts, current_counts) -> float:
    """Population stability index over the same bins."""
    p = np.clip(_shares(reference_counts), EPS, None)
    q = np.clip(_shares(current_counts), EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference_counts, current_counts) -> float:
    """Jensen-Shannon distance, base 2 (0 = same distribution, 1 = disjoint)."""
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(_shares(reference_counts), _shares(current_counts), base=2))


def ks(reference_cdf, current_cdf, n_reference: int, n_current: int) -> tuple[float, float]:
    """Two-sample KS statistic over a grid of CDF points, and its asymptotic p-value (scipy's 'asymp')."""
    from scipy import stats

    d = float(np.max(np.abs(np.asarray(reference_cdf) - np.asarray(current_cdf)))) if len(reference_cdf) else 0.0
    en = n_reference * n_current / (n_reference + n_current)
    return d, float(stats.kstwo.sf(d, np.round(en)))


def wasserstein(grid, reference_cdf, current_cdf) -> float:
    """First Wasserstein distance: the area between the two CDFs, by the trapezoid rule over the grid."""
    x = np.asarray(grid, dtype=np.float64)
    gap = np.abs(np.asarray(reference_cdf) - np.asarray(current_cdf))
    return float(np.sum((gap[:-1] + gap[1:]) / 2 * np.diff(x))) if len(x) > 1 else 0.0


def chi_squared(reference_counts, current_counts) -> tuple[float, float]:
    """Chi-squared test of homogeneity over categories (categories absent from both dropped)."""
    from scipy import stats

    table = np.array([reference_counts, current_counts], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    return float(chi2), float(p)
