"""record_decisions: the scoring API's decisions, from its buffer on disk into gold.decisions_online.

Each decision has its own id, so the MERGE inserts a decision once however often its file is read
(a file still being written is read again next run); closed files are deleted once merged. Nothing
answered is lost: every answered decision was flushed to a file before the answer went out
(scoring.decision_log), and the job counts what it read, inserted and skipped as torn.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from delta.tables import DeltaTable

from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.schemas import Int32, row_values, spark_schema
from lakehouse.tables import commit_metrics, create_if_missing, current_version
from scoring.decision_log import pending_files, read_lines

DECISIONS = "gold.decisions_online"


@dataclass
class ReasonCode:
    feature: str
    value: str | None
    attribution: float  # logit units: > 0 raised the score
    text: str


@dataclass
class OnlineDecision:
    """A row of gold.decisions_online: one answer of POST /v1/score. It carries every column of a
    gold.predictions row (scoring.predictions.Prediction), so monitoring reads it like the others."""

    decision_id: str
    txn_id: str
    customer_id: str
    merchant_id: str
    event_time: dt.datetime
    score: float
    decision: Int32  # 1: score >= threshold
    threshold: float
    model_name: str
    model_version: Int32
    model_alias: str
    mlflow_run_id: str  # the training run behind the model version
    route: str  # champion | canary
    scored_at: dt.datetime
    run_id: str | None  # the record_decisions run that wrote it (meta.lineage)
    features_as_of: dict[str, dt.datetime | None]  # feature view -> the time of the entity's row used
    inputs_numeric: dict[str, float | None]
    inputs_categorical: dict[str, str | None]
    reasons: list[ReasonCode]
    latency_ms: float


DECISION_SCHEMA = spark_schema(OnlineDecision)


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def from_line(row: dict, run_id: str) -> OnlineDecision:
    """A buffer line (JSON) as a typed row, recorded by run `run_id`."""
    return OnlineDecision(**{
        **row, "event_time": _time(row["event_time"]), "scored_at": _time(row["scored_at"]), "run_id": run_id,
        "features_as_of": {k: _time(v) for k, v in row["features_as_of"].items()},
        "reasons": [ReasonCode(r["feature"], None if r["value"] is None else str(r["value"]), r["attribution"], r["text"])
                    for r in row["reasons"]]})


@job(name="record_decisions",
     summary="Merge the scoring API's decisions (its buffer under <root>/services/api/decisions) into "
             "gold.decisions_online.",
     outputs={DECISIONS: ()},
     skip_unchanged=False)  # its input is files outside Delta: it always looks
def record_decisions(run: JobRun, args) -> None:
    spark, cfg = run.spark, run.cfg
    files = pending_files(cfg)
    rows, torn = [], 0
    for path, _ in files:
        lines, cut = read_lines(path)
        rows += lines
        torn += cut
    run.count("decisions_read", len(rows))
    run.count("torn_lines", torn)
    if not rows:
        progress(f"{run.job}: no decisions in the buffer")
        return
    ref = cfg.table(DECISIONS)
    frame = spark.createDataFrame([row_values(from_line(r, run.run_id)) for r in rows], DECISION_SCHEMA)
    run.writing(DECISIONS)
    create_if_missing(spark, ref.path, DECISION_SCHEMA)
    before = current_version(spark, ref)
    (DeltaTable.forPath(spark, ref.path).alias("t").merge(frame.alias("s"), "t.decision_id = s.decision_id")
     .withSchemaEvolution()  # a table written before decisions carried every gold.predictions column gains them
     .whenNotMatchedInsertAll().execute())
    run.wrote(DECISIONS)
    after = current_version(spark, ref)  # a MERGE that inserts nothing commits nothing
    inserted = commit_metrics(spark, ref, after).get("numTargetRowsInserted", 0) if after != before else 0
    run.count("decisions_inserted", inserted)
    closed = [path for path, done in files if done]
    for path in closed:
        path.unlink()
    progress(f"{run.job}: {len(rows)} decisions read from {len(files)} files ({torn} torn lines skipped), "
             f"{inserted} new -> {DECISIONS}; {len(closed)} closed files removed")
