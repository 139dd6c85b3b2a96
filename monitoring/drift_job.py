"""detect_drift: reference (the model's own training set version) vs windows of its scoring inputs.

Writes gold.drift_metrics, gold.model_performance (where labels arrived) and meta.drift_events
(a window with a metric over its threshold), which continuous training consumes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.cli_options import model_and_date_options, option
from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.errors import ConfigError
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.model_store import model_asset
from lakehouse.schemas import Int32
from monitoring.current import current_predictions
from monitoring.drift import ALL, METRIC_KEYS, SCORE, DriftMetric, DriftWindow, compare, drifted_features, merge_rows
from monitoring.performance import PERFORMANCE_KEYS, ModelPerformance, performance_rows
from registry.contract import resolve
from scoring.predictions import score_udf

METRICS, PERFORMANCE, EVENTS = "gold.drift_metrics", "gold.model_performance", "meta.drift_events"
EVENT_KEYS = ["window_start", "slice_value", "reference_table", "reference_version", "model_name", "model_version"]


@dataclass
class DriftEvent(DriftWindow):
    """A row of meta.drift_events: a window (and slice) in which at least one feature drifted."""

    model_name: str
    model_version: Int32
    drifted_features: list[str]
    detected_at: dt.datetime
    run_id: str
    consumed_at: dt.datetime | None  # set by continuous training when it acts


def _inputs(cfg: Config) -> list[str]:
    return [cfg.training_set_table, *cfg.drift.current_tables, "silver.labels", model_asset(cfg)]


def _outputs(cfg: Config) -> dict[str, list[str]]:
    compared = [t for t in _inputs(cfg) if t != "silver.labels"]
    return {METRICS: compared, EVENTS: compared,
            PERFORMANCE: [*cfg.drift.current_tables, "silver.labels", model_asset(cfg)]}


class Reference(NamedTuple):
    """What the current windows are compared with: a table at a version (None: its latest)."""

    table: str
    version: int | None


def _reference(cfg: Config, model, args) -> Reference:
    """The reference table and version: --reference, else the training set the model was trained on."""
    ref_table = args.reference or model.training_set
    if not ref_table:
        raise ConfigError(f"{model.name} v{model.version} records no training set", hint="pass --reference TABLE")
    ref_version = args.reference_version
    if ref_version is None and ref_table == model.training_set:
        ref_version = model.training_set_version
    return Reference(ref_table, ref_version)


def _plan(run: JobRun, args) -> dict[str, int | None]:
    """What this run compares: the model's own training set version, the predictions' latest versions."""
    model = resolve(run.cfg, args.alias)
    ref_table, ref_version = _reference(run.cfg, model, args)
    planned = run.current_versions([t for t in run.declared_inputs if t != ref_table and not t.startswith("model:")])
    planned[model_asset(run.cfg)] = model.version
    planned[ref_table] = ref_version if ref_version is not None else run.current_versions([ref_table])[ref_table]
    return planned


def compared_features(cfg: Config, model) -> tuple[list[str], list[str]]:
    """drift.numeric_features / categorical_features, by default the model's own inputs."""
    dc = cfg.drift
    numeric = dc.numeric_features or list(model.numeric)
    categorical = dc.categorical_features or list(model.categorical)
    if dc.slice_column and dc.slice_column not in [*numeric, *categorical]:
        raise ConfigError(f"drift.slice_column {dc.slice_column!r} is not one of the compared features",
                          hint=f"choose from {', '.join([*numeric, *categorical])}")
    return numeric, categorical


def scored_reference(reference: DataFrame, model, cfg: Config, numeric: list[str], categorical: list[str]) -> DataFrame:
    """The reference rows' compared features, plus the model's score on them (for score drift)."""
    ref_numeric = list(dict.fromkeys([*numeric, *model.numeric]))
    ref_categorical = [c for c in dict.fromkeys([*categorical, *model.categorical]) if c not in ref_numeric]
    inputs = reference.select(*[F.col(f).cast("double").alias(f) for f in ref_numeric],
                              *[F.col(c).cast("string").alias(c) for c in ref_categorical])
    udf = score_udf(model, cfg.scoring.frame_backend)
    return inputs.withColumn(SCORE, udf(*[F.col(c) for c in model.inputs]))


def current_rows(predictions: DataFrame, numeric: list[str], categorical: list[str]) -> DataFrame:
    """The predictions' recorded inputs and score, as columns like the reference's."""
    return predictions.select("event_time", SCORE,
                              *[F.col("inputs_numeric")[f].alias(f) for f in numeric],
                              *[F.col("inputs_categorical")[c].alias(c) for c in categorical])


def in_dates(predictions: DataFrame, since, until) -> DataFrame:
    if since:
        predictions = predictions.where(F.to_date("event_time") >= F.lit(since))
    if until:
        predictions = predictions.where(F.to_date("event_time") <= F.lit(until))
    return predictions


def model_predictions(run: JobRun, model, args) -> DataFrame:
    """The model's predictions from every configured scoring table written so far, within --since/--until."""
    def read(name: str) -> DataFrame | None:
        return run.read(name) if run.version_to_read(name) is not None else None

    of_model = (F.col("model_name") == model.name) & (F.col("model_alias") == model.alias)
    return in_dates(current_predictions(run.cfg.drift.current_tables, read, of_model), args.since, args.until)


def compared_tables(run: JobRun) -> list[str]:
    """The scoring tables this run read: the current side of every metric row."""
    return [t for t in run.cfg.drift.current_tables if t in run.inputs]


def metric_rows(run: JobRun, rows: list[dict], reference: Reference, model, now: dt.datetime) -> list[DriftMetric]:
    """compare()'s rows as gold.drift_metrics rows: against this reference, tables and model version."""
    dc, current = run.cfg.drift, compared_tables(run)
    return [DriftMetric(r["window"], r["window_end"], dc.slice_column or "", r["slice_value"], reference.table,
                        reference.version, "+".join(current), run.inputs[current[0]], model.version, r["feature"],
                        r["kind"], r["metric"], None if r["value"] is None else float(r["value"]), r["threshold"],
                        r["drifted"], int(r["reference_rows"]), int(r["current_rows"]), run.run_id, now)
            for r in rows]


def drift_events(run: JobRun, drifted: dict[tuple, list[str]], reference: Reference, model,
                 now: dt.datetime) -> list[DriftEvent]:
    """One event per (window, slice) with a drifted feature, for continuous training to consume."""
    dc = run.cfg.drift
    return [DriftEvent(w, w + dt.timedelta(seconds=dc.window_seconds), dc.slice_column or "", s, reference.table,
                       reference.version, model.name, model.version, features, now, run.run_id, None)
            for (w, s), features in drifted.items()]


def labelled_performance(run: JobRun, predictions: DataFrame, model, now: dt.datetime) -> list[ModelPerformance]:
    """Per-window performance over the predictions whose labels have arrived (none before any label)."""
    if run.version_to_read("silver.labels") is None:
        return []
    labelled = predictions.join(run.read("silver.labels").select("txn_id", "is_fraud"), "txn_id")
    return performance_rows(labelled, model, run.cfg.drift.window_seconds, run.run_id, now)


def write_outputs(run: JobRun, metrics: list[DriftMetric], performance: list[ModelPerformance],
                  events: list[DriftEvent]) -> None:
    # consumed_at survives a rerun: continuous training's mark on an event is not reset
    for name, data, row_type, keys, update in ((METRICS, metrics, DriftMetric, METRIC_KEYS, None),
                                               (PERFORMANCE, performance, ModelPerformance, PERFORMANCE_KEYS, None),
                                               (EVENTS, events, DriftEvent, EVENT_KEYS, ["drifted_features"])):
        if data:
            run.writing(name)
            merge_rows(run.spark, run.cfg.table(name).path, data, row_type, keys, update)
            run.wrote(name)


@job(name="detect_drift",
     summary="Compare the champion's training set with windows of scoring inputs and predictions "
             "(PSI, KS, JS, Wasserstein, chi-squared, null rates) into gold.drift_metrics.",
     inputs=_inputs,
     outputs=_outputs,
     options=[*model_and_date_options("whose predictions and training set to compare (default: scoring.alias)",
                                      "of the current windows"),
              option("--reference", help="reference table (default: the training set the model was trained on)"),
              option("--reference-version", type=int, help="reference Delta version (default: the model's)")],
     rerun_options=("since", "until"),
     plan=_plan)
def detect_drift(run: JobRun, args) -> None:
    cfg = run.cfg
    model = resolve(cfg, args.alias)
    run.uses(model_asset(cfg), model.version)
    reference = _reference(cfg, model, args)
    numeric, categorical = compared_features(cfg, model)
    predictions = model_predictions(run, model, args)
    rows = compare(scored_reference(run.read(reference.table), model, cfg, numeric, categorical),
                   current_rows(predictions, numeric, categorical), [*numeric, SCORE], categorical, cfg.drift)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    metrics, drifted = metric_rows(run, rows, reference, model, now), drifted_features(rows)
    write_outputs(run, metrics, labelled_performance(run, predictions, model, now),
                  drift_events(run, drifted, reference, model, now))
    report(run, reference, model, metrics, drifted)


def report(run: JobRun, reference: Reference, model, metrics: list[DriftMetric], drifted) -> None:
    windows = sorted({m.window_start for m in metrics})
    run.count("windows", len(windows))
    run.count("metric_rows", len(metrics))
    run.count("drift_events", len(drifted))
    progress(f"{run.job}: {reference.table}@v{reference.version} vs {len(windows)} window(s) of "
             f"{'+'.join(compared_tables(run))} ({model.name} v{model.version}); {len(metrics)} metric rows -> {METRICS}")
    for w in windows:
        features = drifted.get((w, ALL), [])
        progress(f"{run.job}: window {w:%Y-%m-%d %H:%M}: " + (f"drifted: {', '.join(features)}" if features else "no drift"))
