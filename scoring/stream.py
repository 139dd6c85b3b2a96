"""score_stream: new silver transactions scored as they land, exactly once into gold.predictions_stream.

A Delta stream over silver.transactions with a checkpoint under the storage root; each
micro-batch computes its rows' features as of their own time (features.serving.features_as_of,
the batch job's values by construction), scores them and MERGEs on (txn, model, alias). A batch
replayed after a crash rewrites the same rows, so a restart neither loses nor duplicates one.
"""

from __future__ import annotations

import json
import os
import signal
import time

from pyspark.sql import DataFrame

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.cli_options import option
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.model_store import model_asset
from lakehouse.refine import SILVER_LABELS_SCHEMA
from lakehouse.tables import create_if_missing, current_version, read_table
from features.maturity import first_mature_day, mature
from features.serving import features_as_of, scoring_events
from scoring.predictions import PREDICTION_SCHEMA, merge_predictions
from scoring.routing import describe, record_models, route_pairs, routes, score_routes

SOURCE = "silver.transactions"
TARGET = "gold.predictions_stream"


def stream_dir(cfg: Config):
    return cfg.root / "streams" / "score_stream"


def write_status(cfg: Config, **status) -> None:
    path = stream_dir(cfg) / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"updated_at": time.time(), "pid": os.getpid(), **status}, default=str))
    tmp.replace(path)


SILVER = ("silver.transactions", "silver.customers", "silver.labels")


def _inputs(cfg: Config) -> list[str]:
    return [*SILVER, model_asset(cfg)]


@job(name="score_stream",
     summary="Structured Streaming: score new silver transactions into gold.predictions_stream, exactly once.",
     inputs=_inputs,
     outputs=lambda cfg: {TARGET: _inputs(cfg)},
     options=[option("--alias", help="registry alias to score with (default: scoring.alias, champion)"),
              option("--continuous", is_flag=True,
                     help="keep running (a micro-batch every scoring.stream_trigger_seconds) until stopped; "
                          "default: process what has landed, then stop")],
     skip_unchanged=False,  # the stream's checkpoint knows which rows it has scored
     busy="scoring")  # one stream per checkpoint: a second `stream start` or `run score_stream` stops
def score_stream(run: JobRun, args) -> None:
    spark, cfg = run.spark, run.cfg
    plan = {"routes": routes(cfg, args.alias)}
    record_models(run, plan["routes"])
    target = cfg.table(TARGET)
    create_if_missing(spark, target.path, PREDICTION_SCHEMA)
    counts = {"batches": 0, "rows": 0}
    for name in SILVER:
        run.uses(name)  # each micro-batch reads their latest versions; lineage records them at the start

    def each_batch(df: DataFrame, batch_id: int) -> None:
        txns = read_table(spark, cfg.table(SOURCE))
        customers = read_table(spark, cfg.table("silver.customers"))
        labels_ref = cfg.table("silver.labels")
        labels = read_table(spark, labels_ref) if current_version(spark, labels_ref) is not None \
            else spark.createDataFrame([], SILVER_LABELS_SCHEMA)
        events = scoring_events(df).cache()
        n = events.count()
        if n:
            plan["routes"] = routes(cfg, args.alias)  # a rollout started or stopped takes effect here
            record_models(run, plan["routes"])
            features = features_as_of(cfg, events, txns, customers, labels)
            merge_predictions(spark, target.path, score_routes(features, route_pairs(df, plan["routes"]),
                                                                plan["routes"], cfg, run.run_id))
        events.unpersist()
        counts["batches"] += 1
        counts["rows"] += n
        write_status(cfg, state="running", model=describe(plan["routes"]), last_batch_id=batch_id,
                     last_batch_rows=n, **counts)
        progress(f"{run.job}: batch {batch_id}: scored {n} transactions ({describe(plan['routes'])}) -> {TARGET}")

    checkpoint = cfg.checkpoint_dir(run.job, "predictions")
    run.writing(TARGET)
    mature_day = first_mature_day(cfg, read_table(spark, cfg.table(SOURCE)))
    # skipChangeCommits: an erasure's DELETE (governance) brings no new rows; without it the stream stops there.
    writer = (mature(spark.readStream.format("delta").option("skipChangeCommits", "true")
                     .option("maxFilesPerTrigger", cfg.scoring.stream_max_files_per_trigger)
                     .load(cfg.table(SOURCE).path), mature_day)
              .writeStream.foreachBatch(each_batch).option("checkpointLocation", str(checkpoint)))
    if args.continuous:
        query = writer.trigger(processingTime=f"{cfg.scoring.stream_trigger_seconds} seconds").start()
        stop = {"requested": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
        write_status(cfg, state="running", model=describe(plan["routes"]), **counts)
        progress(f"{run.job}: streaming {SOURCE} -> {TARGET} every {cfg.scoring.stream_trigger_seconds}s "
                 f"(checkpoint {checkpoint}); stop with `tidewater stream stop` or Ctrl-C")
        try:
            while query.isActive and not stop["requested"]:
                query.awaitTermination(1)
        except KeyboardInterrupt:
            pass
        query.stop()
    else:
        writer.trigger(availableNow=True).start().awaitTermination()
    write_status(cfg, state="stopped", **counts)
    run.wrote(TARGET)
    run.count("batches", counts["batches"])
    run.count("scored", counts["rows"])
    progress(f"{run.job}: {counts['rows']} transactions in {counts['batches']} micro-batches -> {TARGET}")
