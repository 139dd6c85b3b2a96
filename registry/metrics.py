"""Ranking and threshold metrics for an imbalanced problem, in numpy (same code in both environments)."""

from __future__ import annotations

import numpy as np


def _pr_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray] | None:
    """Precision and recall at each distinct score threshold, highest first (ties grouped); None without positives."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.sum() == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    return tp / (last_of_tie + 1), tp / y.sum()


def average_precision(y_true, scores) -> float:
    """AUC-PR as average precision: precision summed over the recall steps (scikit-learn's definition)."""
    curve = _pr_curve(y_true, scores)
    if curve is None:
        return float("nan")
    precision, recall = curve
    return float(np.sum(precision * np.diff(np.r_[0.0, recall])))


def recall_at_precision(y_true, scores, precision_target: float) -> float:
    """The best recall among thresholds whose precision reaches the target (0 when none does)."""
    curve = _pr_curve(y_true, scores)
    if curve is None:
        return float("nan")
    precision, recall = curve
    ok = precision >= precision_target
    return float(recall[ok].max()) if ok.any() else 0.0


def threshold_metrics(y_true, scores, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of `score >= threshold`; NaN where a ratio is 0/0 (undefined, not zero)."""
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(scores) >= threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    nan = float("nan")
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan
    return {"precision": precision, "recall": recall, "f1": f1}


def model_metrics(y_true, scores, precision_target: float, threshold: float) -> dict[str, float]:
    """Every metric the registry may compare on, plus the label count behind them."""
    return {
        "auc_pr": average_precision(y_true, scores),
        "recall_at_precision": recall_at_precision(y_true, scores, precision_target),
        **threshold_metrics(y_true, scores, threshold),
        "labels": float(len(y_true)),
        "positives": float(np.sum(y_true)),
    }
