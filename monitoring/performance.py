"""gold.model_performance: how the model did per window, once the labels of its predictions arrived."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.schemas import Int32
from registry.metrics import average_precision, threshold_metrics

PERFORMANCE_KEYS = ["window_start", "model_name", "model_version"]


@dataclass
class ModelPerformance:
    """A row of gold.model_performance: one model version's calls in one window, against the labels."""

    window_start: dt.datetime
    window_end: dt.datetime
    model_name: str
    model_version: Int32
    label_count: int
    positives: int
    precision: float | None  # null: undefined (nothing flagged, or no fraud among the labels)
    recall: float | None
    f1: float | None
    auc_pr: float | None
    run_id: str
    computed_at: dt.datetime


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def performance_rows(labelled: DataFrame, model, window_seconds: int, run_id: str,
                     now: dt.datetime) -> list[ModelPerformance]:
    """Precision, recall, F1 and AUC-PR per window over predictions joined to their labels.

    `decision` already applies each row's own threshold, so a decision of 1 is the positive call.
    """
    windows = (labelled.select(F.timestamp_seconds(F.floor(F.unix_timestamp("event_time") / window_seconds)
                                                   * window_seconds).alias("window"),
                               "score", "decision", F.col("is_fraud").cast("int").alias("is_fraud"))
               .toPandas())  # one pass; the windows are grouped on the driver
    out = []
    for window, pdf in sorted(windows.groupby("window"), key=lambda item: item[0]):
        start = window.to_pydatetime()
        called = threshold_metrics(pdf.is_fraud, pdf.decision, threshold=1)
        out.append(ModelPerformance(
            start, start + dt.timedelta(seconds=window_seconds), model.name, model.version, len(pdf),
            int(pdf.is_fraud.sum()), _defined(called["precision"]), _defined(called["recall"]),
            _defined(called["f1"]), _defined(average_precision(pdf.is_fraud, pdf.score)), run_id, now))
    return out
