"""`tidewater quarantine replay TABLE`: send (fixed) quarantined rows back through the silver gate.

Selected rows are refined and gated exactly like new bronze rows. Those that now pass are MERGEd
into silver (so a key already there is never inserted twice). Then one commit to the quarantine
table marks every selected row replayed and quarantines again, with today's reason, those that
still fail: a replay killed at any point leaves either nothing marked (the rerun does it all, and
silver's keys absorb what it had inserted) or everything settled.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.errors import TableNotFound
from lakehouse.cli_options import option
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.quarantine import settle_replay
from lakehouse.silver import refiners
from lakehouse.tables import read_table

def _outputs(cfg: Config) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for entity in cfg.sources:
        out[f"silver.{entity}"] = out[f"quarantine.{entity}"] = (f"quarantine.{entity}",)
    out["gold.quality_results"] = tuple(f"quarantine.{e}" for e in cfg.sources)
    return out


@job(name="quarantine_replay",
     summary="Send quarantined rows (optionally of one reason) back through the silver gate.",
     inputs=lambda cfg: [f"quarantine.{e}" for e in cfg.sources],
     outputs=_outputs,
     options=[option("--table", required=True, help="silver table whose quarantine to replay, e.g. silver.transactions"),
              option("--reason", help="replay only rows quarantined for this reason")],
     skip_unchanged=False)
def replay_quarantine(run: JobRun, args) -> None:
    """Replay the not-yet-replayed quarantine rows of a silver table (optionally one reason)."""
    spark, cfg = run.spark, run.cfg
    entity = args.table.split(".", 1)[-1]
    target = f"silver.{entity}"
    by_entity = {r.entity: r for r in refiners(spark, cfg, run)}
    if entity not in by_entity:
        raise TableNotFound(f"{target} is not a refined silver table",
                            hint=f"replayable: {', '.join('silver.' + e for e in by_entity)}")
    quarantine = cfg.table(f"quarantine.{entity}")
    pending = run.read(quarantine.name).where(F.col("replayed_at").isNull())
    if args.reason:
        pending = pending.where(F.col("reason") == args.reason)
    pending = pending.localCheckpoint()  # the quarantine table changes below
    n = pending.count()
    run.count(f"{entity}_replayed", n)
    if n == 0:
        return
    refiner = by_entity[entity]
    for name in (target, quarantine.name, "gold.quality_results"):
        run.writing(name)

    def settle(refused):
        settle_replay(spark, cfg, target, pending, refused, run_id=run.run_id, source_table=refiner.bronze)

    refiner.process_rows(pending.select("raw", "_source_file", "_batch_id", "_ingested_at"), batch_id=0,
                         settle=settle)
    for name in (target, quarantine.name, "gold.quality_results"):
        run.wrote(name)


def still_quarantined(spark: SparkSession, cfg: Config, entity: str):
    return read_table(spark, cfg.table(f"quarantine.{entity}")).where(F.col("replayed_at").isNull())
