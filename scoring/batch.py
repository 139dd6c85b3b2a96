"""score_batch: a silver slice scored with the model behind an alias, into gold.predictions by MERGE.

Features are the ones the model was trained on, joined as of each transaction's time (Feast over
the offline tables), so run compute_features first; the demo's stage order does.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.cli_options import model_and_date_options
from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.model_store import model_asset
from lakehouse.tables import current_version, read_table
from features.serving import point_in_time_features, scoring_events
from registry.contract import resolve
from scoring.predictions import merge_predictions, score

PREDICTIONS = "gold.predictions"


def select_slice(spark: SparkSession, cfg: Config, txns: DataFrame, model, since: dt.date | None,
                 until: dt.date | None) -> DataFrame:
    """A date range if given; otherwise every transaction this model version has not scored yet."""
    if since or until:
        if since:
            txns = txns.where(F.to_date("event_time") >= F.lit(since))
        if until:
            txns = txns.where(F.to_date("event_time") <= F.lit(until))
        return txns
    ref = cfg.table(PREDICTIONS)
    if current_version(spark, ref) is None:
        return txns
    done = (read_table(spark, ref).where((F.col("model_name") == model.name) & (F.col("model_alias") == model.alias)
                                         & (F.col("model_version") == model.version)).select("txn_id"))
    return txns.join(done, "txn_id", "left_anti")


def _inputs(cfg: Config) -> list[str]:
    return ["silver.transactions", *(v.table for v in cfg.features.views.values()), model_asset(cfg)]


@job(name="score_batch",
     summary="Score silver transactions (a date range, or all not yet scored) with the registered model "
             "into gold.predictions.",
     inputs=_inputs,
     outputs=lambda cfg: {PREDICTIONS: _inputs(cfg)},
     options=model_and_date_options("registry alias to score with (default: scoring.alias, champion)", "to score"),
     skip_unchanged=False)  # it scores only what this model version has not scored yet
def score_batch(run: JobRun, args) -> None:
    spark, cfg = run.spark, run.cfg
    model = resolve(cfg, args.alias)
    run.uses(model_asset(cfg), model.version)
    txns = run.read("silver.transactions")
    for view in cfg.features.views.values():
        run.uses(view.table)  # Feast reads the current versions; lineage records which
    todo = select_slice(spark, cfg, txns, model, args.since, args.until).cache()
    n = todo.count()
    if n == 0:
        progress(f"{run.job}: nothing new to score with {model.name} v{model.version} (@{model.alias})")
        todo.unpersist()
        return
    predictions = score(point_in_time_features(cfg, scoring_events(todo)), model, cfg, run.run_id).cache()
    flagged = predictions.agg(F.sum("decision")).first()[0] or 0
    run.writing(PREDICTIONS)
    merge_predictions(spark, cfg.table(PREDICTIONS).path, predictions)
    run.wrote(PREDICTIONS)
    predictions.unpersist()
    todo.unpersist()
    run.count("scored", n)
    run.count("model_version", model.version)
    progress(f"{run.job}: scored {n} transactions with {model.name} v{model.version} (@{model.alias}) "
             f"-> {PREDICTIONS}; {flagged} flagged at threshold {cfg.scoring.threshold}")
