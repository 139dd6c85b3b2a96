"""materialize_online: push the latest offline feature values to the online store."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.job_runner import JobSpec, progress
from lakehouse.lineage import JobRun, track_run
from features.store import feature_store

JOB = "materialize_online"


def materialize_online(spark: SparkSession, cfg: Config) -> JobRun:
    """First run: backfill from the earliest feature row; later runs: only what is new since."""
    store = feature_store(cfg)
    now = dt.datetime.now(dt.timezone.utc)
    with track_run(spark, cfg, JOB) as run:
        for name, view in cfg.features.views.items():
            offline = run.read(view.table)
            if store.get_feature_view(name).materialization_intervals:
                store.materialize_incremental(end_date=now, feature_views=[name])
            else:
                # materialize_incremental would start at now - ttl and skip older history.
                first = offline.agg(F.min("event_timestamp")).first()[0]
                if first is None:
                    continue
                store.materialize(start_date=first.replace(tzinfo=dt.timezone.utc) - dt.timedelta(seconds=1),
                                  end_date=now, feature_views=[name])
            run.count(f"{name}_entities", offline.select(view.key).distinct().count())
            progress(f"{JOB}: {name} -> {cfg.features.online_store} online store")
    return run


MATERIALIZE_ONLINE = JobSpec(
    name=JOB,
    summary="Materialize the latest feature values to the online store (SQLite, or Redis when configured).",
    run=lambda spark, cfg, args: materialize_online(spark, cfg),
)
