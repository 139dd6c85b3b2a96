"""Ranking and threshold metrics for an imbalanced problem, in numpy (same code in both environments)."""

from __future__ import annotations

import numpy as np


def _pr_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Precision, recall and the threshold at each distinct score, highest first (ties grouped); None without positives."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.sum() == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    return tp / (last_of_tie + 1), tp / y.sum(), s[last_of_tie]


def average_precision(y_true, scores) -> float:
    """AUC-PR as average precision: precision summed over the recall steps (scikit-learn's definition)."""
    curve = _pr_curve(y_true, scores)
    if curve is None:
        return float("nan")
    precision, recall, _ = curve
    return float(np.sum(precision * np.diff(np.r_[0.0, recall])))


def recall_at_precision(y_true, scores, precision_target: float) -> float:
    """The best recall among thresholds whose precision reaches the target (0 when none does)."""
    curve = _pr_curve(y_true, scores)
    if curve is None:
        return float("nan")
    precision, recall, _ = curve
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


def choose_threshold(y_true, scores, rule: str, precision: float, alert_share: float) -> tuple[float, str]:
    """A decision threshold (flag when score >= it) from a target, and how it was reached.

    `alert_budget`: flag at most `alert_share` of the legitimate rows (a false-alert budget). Judged on
    the legitimate rows alone, it does not depend on the slice's fraud share, which recent slices
    overstate (fraud labels arrive days before legitimate ones). `precision`: the lowest threshold
    whose precision on the rows reaches the target (the most fraud caught at that precision); where
    none does, the best F1. It takes the slice's fraud share as it is.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y_true).astype(bool)
    if len(s) == 0:
        raise ValueError("no rows to choose a decision threshold on")
    if rule == "alert_budget":
        legit = np.sort(s[~y])[::-1]
        if len(legit) == 0:
            raise ValueError("no legitimate rows to spend an alert budget on")
        k = int(np.floor(alert_share * len(legit)))  # legitimate rows it may flag
        threshold = float(np.nextafter(legit[k], np.inf)) if k < len(legit) else float(legit[-1])
        caught = f", {np.mean(s[y] >= threshold):.1%} of {int(y.sum())} fraud" if y.any() else ""
        return threshold, (f"flags {np.mean(legit >= threshold):.1%} of {len(legit)} legitimate validation rows "
                           f"(budget {alert_share:.1%}){caught}")
    curve = _pr_curve(y, s)
    if curve is None:
        raise ValueError("no positive labels to choose a precision-based decision threshold on")
    prec, rec, cut = curve
    reached = np.flatnonzero(prec >= precision)
    if reached.size:
        i = int(reached[-1])  # the lowest threshold (highest recall) still at the target
        return float(cut[i]), f"precision {prec[i]:.3f} >= {precision} at recall {rec[i]:.3f} on validation"
    f1 = 2 * prec * rec / np.where(prec + rec > 0, prec + rec, 1.0)
    i = int(np.argmax(f1))
    return float(cut[i]), (f"no threshold reaches precision {precision} on validation; best F1 {f1[i]:.3f} "
                           f"(precision {prec[i]:.3f}, recall {rec[i]:.3f})")
