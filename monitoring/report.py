"""The drift report: metric-over-time and reference-vs-current plots from the drift tables.

Distributions are histogrammed in Spark (counts per bin), never collected row by row.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.errors import TableNotFound
from lakehouse.model_store import model_name
from lakehouse.tables import current_version, read_table
from monitoring.current import current_predictions
from monitoring.drift import SCORE

METRICS = "gold.drift_metrics"


def metric_over_time(spark, cfg: Config, metric: str = "psi", slice_value: str = "__all__") -> pd.DataFrame:
    """window_start x feature -> the metric's value, from the latest rows in gold.drift_metrics."""
    ref = cfg.table(METRICS)
    if current_version(spark, ref) is None:
        raise TableNotFound(f"{METRICS} is empty", hint="run `tidewater run detect_drift` first")
    rows = (read_table(spark, ref).where((F.col("metric") == metric) & (F.col("slice_value") == slice_value))
            .select("window_start", "feature", "value").toPandas())
    return rows.pivot_table(index="window_start", columns="feature", values="value", aggfunc="last").sort_index()


def drifted_windows(spark, cfg: Config, slice_value: str = "__all__") -> pd.DataFrame:
    """window_start -> the features judged drifted in it, oldest window first."""
    return (read_table(spark, cfg.table(METRICS)).where((F.col("slice_value") == slice_value) & F.col("drifted"))
            .groupBy("window_start").agg(F.array_sort(F.collect_set("feature")).alias("drifted_features"))
            .orderBy("window_start").toPandas())


def _read_existing(spark, cfg: Config):
    return lambda name: read_table(spark, cfg.table(name)) if current_version(spark, cfg.table(name)) is not None else None


def reference_and_current(spark, cfg: Config, feature: str, window_start: dt.datetime, bins: int = 30) -> pd.DataFrame:
    """Shares per bin (numeric) or per category for the reference and one current window.

    The window's rows come from every table the drift job compared (batch and streaming predictions
    of the same model version); a window with no rows there gives an empty current column.
    """
    latest = (read_table(spark, cfg.table(METRICS)).where((F.col("feature") == feature) & (F.col("kind") != "dataset"))
              .orderBy(F.desc("computed_at")).first())
    reference = read_table(spark, cfg.table(latest["reference_table"]), latest["reference_version"])
    model = (F.col("model_name") == model_name(cfg)) & (F.col("model_version") == latest["model_version"])
    current = current_predictions(latest["current_table"].split("+"), _read_existing(spark, cfg), model)
    end = window_start + dt.timedelta(seconds=cfg.drift.window_seconds)
    current = current.where((F.col("event_time") >= F.lit(window_start)) & (F.col("event_time") < F.lit(end)))
    if latest["kind"] == "categorical":
        ref_v = reference.select(F.col(feature).cast("string").alias("v"))
        cur_v = current.select(F.col("inputs_categorical")[feature].alias("v"))
        shares = {}
        for name, df in (("reference", ref_v), ("current", cur_v)):
            counts = {r["v"]: r["count"] for r in df.groupBy("v").count().collect()}
            total = sum(counts.values()) or 1
            shares[name] = {k: v / total for k, v in counts.items()}
        return pd.DataFrame(shares).fillna(0.0).sort_index()
    ref_v = reference.select(F.col(feature).cast("double").alias("v"))
    cur_v = current.select((F.col(SCORE) if feature == SCORE else F.col("inputs_numeric")[feature]).alias("v"))
    # approxQuantile gives [] (not [nan]) on no rows: take the range from whichever side has values
    ends = [q for df in (ref_v, cur_v) for q in df.approxQuantile("v", [0.005, 0.995], 0.001)]
    if not ends:
        return pd.DataFrame({"reference": [], "current": []})
    lo, hi = min(ends), max(ends)
    edges = np.linspace(lo, hi, bins + 1)
    out = {}
    for name, df in (("reference", ref_v), ("current", cur_v)):
        b = F.least(F.greatest(F.floor((F.col("v") - lo) / ((hi - lo) / bins or 1.0)), F.lit(0)), F.lit(bins - 1))
        counts = {int(r["b"]): r["count"] for r in df.where(F.col("v").isNotNull()).select(b.alias("b")).groupBy("b").count().collect()}
        total = sum(counts.values()) or 1
        out[name] = [counts.get(i, 0) / total for i in range(bins)]
    return pd.DataFrame(out, index=pd.Index(np.round((edges[:-1] + edges[1:]) / 2, 3), name=feature))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def write_report(spark, cfg: Config, out: str | None, top: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(out) if out else cfg.root / "reports" / "drift.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>Tidewater drift report</h1><p>{html.escape(str(cfg.root))}, generated "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC</p>"]
    for metric in ("psi", "js_distance", "ks_statistic"):
        table = metric_over_time(spark, cfg, metric)
        if table.empty:
            continue
        fig, ax = plt.subplots(figsize=(10, 3.5))
        table.plot(ax=ax, marker=".", legend=True)
        threshold = cfg.drift.thresholds.get(metric)
        if threshold is not None:
            ax.axhline(threshold, color="red", linestyle="--", label="threshold")
        ax.set_title(f"{metric} per window (all rows)")
        ax.legend(fontsize=7, ncol=3)
        parts.append(f"<h2>{metric} over time</h2><img src='data:image/png;base64,{_png(fig)}'>")
        plt.close(fig)
    drifted = drifted_windows(spark, cfg)
    parts.append("<h2>Windows with drift</h2>" + (drifted.to_html(index=False) if len(drifted) else "<p>none</p>"))
    if len(drifted):
        window = drifted.window_start.iloc[-1].to_pydatetime()
        counts = pd.Series([f for fs in drifted.drifted_features for f in fs]).value_counts()
        for feature in list(counts.index[:top]):
            dist = reference_and_current(spark, cfg, feature, window)
            fig, ax = plt.subplots(figsize=(8, 3))
            dist.plot.bar(ax=ax, width=0.8)
            ax.set_title(f"{feature}: reference vs window {window:%Y-%m-%d}")
            ax.tick_params(axis="x", labelsize=6)
            parts.append(f"<h3>{html.escape(feature)}</h3><img src='data:image/png;base64,{_png(fig)}'>")
            plt.close(fig)
    path.write_text("<html><head><meta charset='utf-8'><title>Drift report</title></head><body>"
                    + "\n".join(parts) + "</body></html>")
    return path


def demo_report(spark, cfg: Config) -> list[str]:
    """For `tidewater demo`: the windows in which features drifted (a `tidewater.demo_reports` entry point)."""
    events = cfg.table("meta.drift_events")
    if current_version(spark, events) is None:
        return []
    rows = read_table(spark, events).where(F.col("slice_value") == "__all__").orderBy("window_start").collect()
    if not rows:
        return ["drift: no window drifted overall"]
    return [f"drift {r['window_start']:%Y-%m-%d}: {', '.join(r['drifted_features'])}" for r in rows]
