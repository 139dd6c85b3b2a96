"""score_batch: a silver slice scored with the model behind an alias, into gold.predictions by MERGE.

Features are the ones the model was trained on, joined as of each transaction's time (Feast's rule over
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
from lakehouse.tables import current_version, read_table, union_all
from features.maturity import first_mature_day, mature
from features.serving import point_in_time_features, scoring_events
from scoring.batch_explanations import EXPLANATIONS, explain_flagged, merge_explanations
from scoring.predictions import merge_predictions
from scoring.routing import describe, record_models, route_pairs, routes, score_routes

PREDICTIONS = "gold.predictions"


def select_slice(spark: SparkSession, cfg: Config, txns: DataFrame, model, since: dt.date | None,
                 until: dt.date | None) -> DataFrame:
    """A date range if given; otherwise every transaction of `txns` this model version has not scored yet."""
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
             "into gold.predictions, with reason codes for the flagged ones in gold.prediction_explanations.",
     inputs=_inputs,
     outputs=lambda cfg: {PREDICTIONS: _inputs(cfg), EXPLANATIONS: _inputs(cfg)},
     options=model_and_date_options("registry alias to score with (default: scoring.alias, champion)", "to score"),
     skip_unchanged=False)  # it scores only what this model version has not scored yet
def score_batch(run: JobRun, args) -> None:
    spark, cfg = run.spark, run.cfg
    plan = routes(cfg, args.alias)
    record_models(run, plan)
    txns = run.read("silver.transactions")
    for view in cfg.features.views.values():
        run.uses(view.table)  # recorded even when nothing is left to score
    todo = _still_to_score(spark, cfg, txns, plan, args)
    events = txns.join(todo.select("txn_id").distinct(), "txn_id").cache()
    n = events.count()
    if n == 0:
        progress(f"{run.job}: nothing new to score with {describe(plan)}")
        events.unpersist()
        return
    features = point_in_time_features(cfg, scoring_events(events), run.read).cache()
    predictions = score_routes(features, todo, plan, cfg, run.run_id).cache()
    flagged = {r["route"]: (r["n"], r["flagged"] or 0) for r in
               predictions.groupBy("route").agg(F.count("*").alias("n"), F.sum("decision").alias("flagged")).collect()}
    run.writing(PREDICTIONS)
    merge_predictions(spark, cfg.table(PREDICTIONS).path, predictions)
    run.wrote(PREDICTIONS)
    if cfg.scoring.reasons:
        run.writing(EXPLANATIONS)
        merge_explanations(spark, cfg.table(EXPLANATIONS).path, explain_flagged(features, predictions, plan, cfg, run.run_id))
        run.wrote(EXPLANATIONS)
    for frame in (predictions, features, events):
        frame.unpersist()
    run.count("scored", n)
    run.count("model_version", plan[0].model.version)
    progress(f"{run.job}: scored {n} transactions -> {PREDICTIONS}: " + "; ".join(
        f"{r.name} v{r.model.version}: {flagged.get(r.name, (0, 0))[0]} rows, {flagged.get(r.name, (0, 0))[1]} "
        f"flagged at its threshold {r.model.threshold:.4f}" for r in plan))


def _still_to_score(spark, cfg: Config, txns: DataFrame, plan, args) -> DataFrame:
    """(txn_id, route) pairs: per route, its share of the slice that its model version has not scored yet."""
    if not (args.since or args.until):  # by default only mature transactions; the day is found once, not per route
        txns = mature(txns, first_mature_day(cfg, txns))
    pairs = [route_pairs(select_slice(spark, cfg, txns, r.model, args.since, args.until), [r]) for r in plan]
    return union_all(pairs)
