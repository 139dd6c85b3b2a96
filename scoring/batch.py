"""score_batch: a silver slice scored with the model behind an alias, into gold.predictions by MERGE.

Features are the ones the model was trained on, joined as of each transaction's time (Feast over
the offline tables), so run compute_features first; the demo's stage order does.
"""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.job_runner import JobSpec
from lakehouse.lineage import JobRun, track_run
from lakehouse.tables import current_version, read_table
from features.serving import point_in_time_features, scoring_events
from scoring.model import add_model_and_dates, resolve
from scoring.predictions import merge_predictions, score

JOB = "score_batch"
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


def score_batch(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> JobRun:
    model = resolve(cfg, getattr(args, "alias", None))
    with track_run(spark, cfg, JOB) as run:
        txns = run.read("silver.transactions")
        for view in cfg.features.views.values():
            run.read(view.table)  # Feast reads the current versions; lineage records which
        todo = select_slice(spark, cfg, txns, model, getattr(args, "since", None), getattr(args, "until", None))
        todo = todo.cache()
        n = todo.count()
        if n == 0:
            progress(f"{JOB}: nothing new to score with {model.name} v{model.version} (@{model.alias})")
            todo.unpersist()
            return run
        predictions = score(point_in_time_features(cfg, scoring_events(todo)), model, cfg)
        run.writing(PREDICTIONS)
        merge_predictions(spark, cfg.table(PREDICTIONS).path, predictions)
        run.wrote(PREDICTIONS)
        todo.unpersist()
        run.count("scored", n)
        run.count("model_version", model.version)
        flagged = (read_table(spark, cfg.table(PREDICTIONS))
                   .where((F.col("model_version") == model.version) & (F.col("model_alias") == model.alias))
                   .agg(F.sum("decision")).first()[0] or 0)
        progress(f"{JOB}: scored {n} transactions with {model.name} v{model.version} (@{model.alias}) "
                 f"-> {PREDICTIONS}; {flagged} flagged at threshold {cfg.scoring.threshold} so far")
    return run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_dates(parser, "registry alias to score with (default: scoring.alias, champion)", "to score")


SCORE_BATCH = JobSpec(
    name=JOB,
    summary="Score silver transactions (a date range, or all not yet scored) with the registered model "
            "into gold.predictions.",
    run=score_batch,
    add_arguments=add_arguments,
)
