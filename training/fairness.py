"""The fairness gate: group metrics per sensitive slice on the held-out rows, at the version's own threshold.

Promotion bars (training.promotion) judge how well a version ranks fraud overall; they say nothing
about whom its alerts fall on. This gate computes, with fairlearn's MetricFrame, each group's
selection rate (share flagged), false-positive rate (legitimate rows flagged) and true-positive rate
(fraud caught), and the largest gap between groups per metric and slice. A gap above its bound in
training.fairness.max_gap blocks promotion. Groups with fewer than min_group_rows rows are reported
but not gated (their rates are mostly noise); a rate a group cannot have (FPR without legitimate
rows, TPR without fraud) is undefined and left out of the gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, selection_rate

from lakehouse.config import FairnessConf

METRICS = ("selection_rate", "false_positive_rate", "true_positive_rate")
MISSING_GROUP = "unknown"  # rows whose slice value is missing form a group of their own


def _rate(hits: np.ndarray, among: np.ndarray) -> float:
    n = int(among.sum())
    return float((hits & among).sum() / n) if n else float("nan")


def _false_positive_rate(y_true, y_pred) -> float:
    return _rate(np.asarray(y_pred, bool), ~np.asarray(y_true, bool))


def _true_positive_rate(y_true, y_pred) -> float:
    return _rate(np.asarray(y_pred, bool), np.asarray(y_true, bool))


def _positives(y_true, y_pred) -> int:
    return int(np.asarray(y_true, bool).sum())


def _rows(y_true, y_pred) -> int:
    return len(y_true)


# fairlearn's own false/true_positive_rate return 0 where the rate is undefined (no legitimate rows,
# no fraud); these return NaN there, so an undefined rate never looks like a measured one.
_METRIC_FUNCTIONS = {"rows": _rows, "positives": _positives, "selection_rate": selection_rate,
                     "false_positive_rate": _false_positive_rate, "true_positive_rate": _true_positive_rate}


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined rate is null."""
    return None if value != value else round(float(value), 6)


def slice_report(labels, flagged, groups: pd.Series, conf: FairnessConf) -> dict:
    """One slice: every group's metrics (fairlearn MetricFrame) and the largest gap per metric among gated groups."""
    frame = MetricFrame(metrics=_METRIC_FUNCTIONS, y_true=np.asarray(labels, bool), y_pred=np.asarray(flagged, bool),
                        sensitive_features=groups.astype(object).where(groups.notna(), MISSING_GROUP).astype(str)
                        .rename(groups.name).reset_index(drop=True))
    by_group = frame.by_group.sort_values("rows", ascending=False)
    gated = by_group[by_group["rows"] >= conf.min_group_rows]
    gaps = {}
    for metric in METRICS:
        values = gated[metric].dropna()
        if len(values) >= 2:
            gaps[metric] = {"gap": _number(values.max() - values.min()), "highest": str(values.idxmax()),
                            "lowest": str(values.idxmin())}
    return {"groups": [{"group": str(group), "rows": int(r["rows"]), "positives": int(r["positives"]),
                        **{m: _number(r[m]) for m in METRICS}, "gated": bool(r["rows"] >= conf.min_group_rows)}
                       for group, r in by_group.iterrows()],
            "gaps": gaps}


def fairness_report(rows: pd.DataFrame, label: str, scores, threshold: float, conf: FairnessConf) -> dict:
    """Every configured slice of `rows` judged at `threshold`; `passed` is False when any gap exceeds its bound.

    `violations` says which, in words a decision row can carry.
    """
    missing = [s for s in conf.slices if s not in rows.columns]
    if missing:
        raise KeyError(f"fairness slice column(s) {', '.join(missing)} missing from the held-out rows")
    flagged = np.asarray(scores, dtype=np.float64) >= threshold
    slices = {name: slice_report(rows[label].to_numpy(), flagged, rows[name], conf) for name in conf.slices}
    violations = []
    for name, report in slices.items():
        for metric, bound in conf.max_gap.items():
            gap = report["gaps"].get(metric)
            if gap is not None and gap["gap"] > bound:
                high, low = gap["highest"], gap["lowest"]
                rates = {g["group"]: g[metric] for g in report["groups"]}
                violations.append(f"{name}: {metric} gap {gap['gap']:.3f} > {bound} "
                                  f"({high} {rates[high]:.3f} vs {low} {rates[low]:.3f})")
    return {"threshold": threshold, "rows": len(rows), "min_group_rows": conf.min_group_rows,
            "max_gap": dict(conf.max_gap), "slices": slices, "violations": violations, "passed": not violations}


def fairness_summary(report: dict) -> str:
    """One line: the verdict and the largest gated gap per bounded metric."""
    if not report["passed"]:
        return "fairness gate failed: " + "; ".join(report["violations"])
    largest = []
    for metric in report["max_gap"]:
        gaps = [(r["gaps"][metric]["gap"], name) for name, r in report["slices"].items() if metric in r["gaps"]]
        if gaps:
            gap, name = max(gaps)
            largest.append(f"{metric} {gap:.3f} ({name})")
    return "fair: largest gaps " + ", ".join(largest) if largest else \
        f"fair: no slice has two groups of {report['min_group_rows']}+ rows to compare"
