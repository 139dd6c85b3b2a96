"""materialize_online: push the latest offline feature values to the online store.

Feast's own incremental mode windows by wall-clock time (from the last run to now), so feature rows
that arrive late, or carry historical event times, would never reach the online store. Instead the
window starts at the earliest event time among the rows that changed since the Delta version the
last run read; Feast then writes each entity's latest value from that window on.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun, last_successful_inputs
from lakehouse.tables import read_table
from features.compute import EVENT_TIME
from features.store import feature_store, online_features, online_store_errors

def _changed_since(spark: SparkSession, cfg: Config, table: str, before: int | None, now_df):
    """The earliest event time among rows new or changed since version `before` (None: all rows)."""
    changed = now_df if before is None else now_df.exceptAll(read_table(spark, cfg.table(table), before))
    return changed.agg(F.min(EVENT_TIME)).first()[0]


def _online_lost(cfg: Config, store, view, offline) -> bool:
    """The online store no longer holds the view (a deleted online.db, a flushed Redis): the entity of
    the newest offline row has no online value for any of the view's features."""
    import sqlite3

    row = offline.orderBy(F.desc(EVENT_TIME)).select(view.key).first()
    if row is None:
        return False
    try:
        values = online_features(cfg, view.key, [row[0]], store=store)
    except sqlite3.OperationalError:  # the view's table is gone with the file
        return True
    return all(values[f.name][0] is None for f in view.features)


@job(name="materialize_online",
     summary="Materialize the latest feature values to the online store (SQLite, or Redis when configured).",
     inputs=lambda cfg: [v.table for v in cfg.features.views.values()],
     outputs=lambda cfg: {f"online:{name}": (v.table,) for name, v in cfg.features.views.items()},
     skip_unchanged=False)  # an unchanged view is skipped only while the online store still holds it
def materialize_online(run: JobRun, args) -> None:
    """Each view whose offline table moved: from its earliest changed event time to now; a view the
    online store lost: all of it."""
    spark, cfg = run.spark, run.cfg
    store = feature_store(cfg)
    previous = last_successful_inputs(spark, cfg, run.job) or {}
    now = dt.datetime.now(dt.timezone.utc)
    for name, view in cfg.features.views.items():
        offline = run.read(view.table)
        since = previous.get(view.table)
        if since is not None and _online_lost(cfg, store, view, offline):
            progress(f"{run.job}: {name} is missing from the {cfg.features.online_store} online store: refilling all of it")
            since = None
        elif since == run.inputs[view.table]:
            progress(f"{run.job}: {name} unchanged since the last materialization")
            continue
        start = _changed_since(spark, cfg, view.table, since, offline)
        if start is None:
            continue
        with online_store_errors(cfg):
            store.materialize(start_date=start.replace(tzinfo=dt.timezone.utc) - dt.timedelta(seconds=1),
                              end_date=now, feature_views=[name])
        run.wrote_asset(f"online:{name}", run.inputs[view.table], previous.get(view.table))
        run.count(f"{name}_entities", offline.where(F.col(EVENT_TIME) >= start)
                  .select(view.key).distinct().count())
        progress(f"{run.job}: {name} from {start} -> {cfg.features.online_store} online store")


def demo_report(spark: SparkSession, cfg: Config) -> list[str]:
    """For `tidewater demo`: one online lookup, the way scoring code will do it."""
    name, view = next(iter(cfg.features.views.items()))
    row = read_table(spark, cfg.table(view.table)).orderBy(F.desc(EVENT_TIME)).select(view.key).first()
    if row is None:
        return []
    values = online_features(cfg, view.key, [row[0]])
    shown = ", ".join(f"{k}={v[0]:.4g}" if isinstance(v[0], float) else f"{k}={v[0]}" for k, v in values.items())
    return [f"Online lookup ({cfg.features.online_store}): {shown}",
            f"  tidewater features get --entity {view.key}={row[0]} --root {cfg.root}"]
