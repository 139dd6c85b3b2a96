"""Erasing one customer: their rows out of every table that holds them, off the disk, and out of the
online store, with a record of what was removed.

The tables come from the configuration and their schemas (governance.subject_tables). Rows are
deleted by a MERGE against a one-row frame of the subject's keys, not a DELETE whose condition (the
id itself) Delta would write into the table's log. Each delete is followed by a purge of deletion
vectors (where a table uses them, the deleted rows are still in the old files) and a VACUUM with no
retention for that table only: the rows leave the disk, not just the current version; time travel
to the versions before the erasure ends with it. Streams over
these tables skip delete commits (`skipChangeCommits`), so they go on after an erasure; one that
has not yet read every commit stops the erasure instead (governance.stream_offsets).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from lakehouse import audit
from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.errors import TidewaterError
from lakehouse.identity import identify
from lakehouse.pii import hmac_sha256_py, pii_key
from lakehouse.retry import retry_conflicts
from lakehouse.schemas import spark_schema
from lakehouse.tables import append_rows, commit_metrics, current_version, read_table
from governance.online_erase import erase_online
from governance.stream_offsets import stream_lags
from governance.subject_tables import SubjectTable, find_keys, keys_frame, subject_rows, subject_tables
from governance.vacuum import retention_check_off, vacuum


class StreamsBehind(TidewaterError):
    """A stream over a table to erase has commits left to read: vacuuming now would take its files."""


@dataclass
class Erasure:
    """One table's part of an erasure (a row of meta.erasures)."""

    erased_at: dt.datetime
    subject_token: str  # HMAC-SHA256 of the id with the PII key: the record never holds the id itself
    table: str  # layer.name, or online:<view>
    version_before: int | None
    version_after: int | None
    rows_removed: int
    files_vacuumed: int
    actor: str  # the identity that ran it (lakehouse.identity)


def subject_token(cfg: Config, subject: str) -> str:
    return hmac_sha256_py(subject, pii_key(cfg))


def _purge_deletion_vectors(spark: SparkSession, path: str) -> None:
    """Rewrite files whose rows a deletion vector hides: until then the rows are still in them."""
    features = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["tableFeatures"] or []
    if "deletionVectors" in features:
        spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)").collect()


def _erase_table(spark: SparkSession, table: SubjectTable, keys: DataFrame, now: dt.datetime, token: str,
                 actor: str) -> Erasure:
    ref = table.ref
    before = current_version(spark, ref)
    retry_conflicts(lambda: DeltaTable.forPath(spark, ref.path).alias("t").merge(keys.alias("s"), subject_rows(table))
                    .whenMatchedDelete().execute(), ref.name)
    deleted = current_version(spark, ref)
    removed = commit_metrics(spark, ref, deleted).get("numTargetRowsDeleted", 0) if deleted != before else 0
    _purge_deletion_vectors(spark, ref.path)
    with retention_check_off(spark):
        files = vacuum(spark, ref, 0)
    progress(f"erase: {ref.name}: {removed} rows removed (v{before} -> v{deleted}), {files} files vacuumed")
    return Erasure(now, token, ref.name, before, current_version(spark, ref), removed, files, actor)


def previous_erasures(spark: SparkSession, cfg: Config, token: str) -> list[dict]:
    ref = cfg.table(cfg.governance.erasures_table)
    if current_version(spark, ref) is None:
        return []
    return [r.asDict() for r in read_table(spark, ref).where(f"subject_token = '{token}'").collect()]


def erase_subject(spark: SparkSession, cfg: Config, subject: str, dry_run: bool = False) -> list[Erasure]:
    """Remove the subject's rows everywhere (dry_run: count them, change nothing); one Erasure per
    table or online view that held any. Nothing found: an empty list."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    token = subject_token(cfg, subject)
    who = identify(cfg)
    tables = subject_tables(spark, cfg)
    keys = keys_frame(spark, find_keys(spark, cfg, tables, subject)).cache()
    found = []
    for table in tables:
        rows = (read_table(spark, table.ref, table.version).alias("t")
                .join(keys.alias("s"), subject_rows(table), "left_semi").count())
        if rows:
            found.append((table, rows))
    if dry_run:
        return ([Erasure(now, token, t.ref.name, t.version, t.version, rows, 0, who.name) for t, rows in found]
                + [Erasure(now, token, o.view, None, None, o.rows, 0, who.name)
                   for o in erase_online(cfg, subject, dry_run=True) if o.rows])
    lags = stream_lags(cfg, [t.ref for t, _ in found], {t.ref.name: current_version(spark, t.ref) for t, _ in found})
    if lags:
        lag = lags[0]
        raise StreamsBehind(
            f"the stream {lag.checkpoint} has not read {lag.table} versions {', '.join(map(str, lag.unread))}: "
            f"erasing now would vacuum files it has yet to read",
            hint="let that job catch up (e.g. `tidewater run score_stream`), then run the erasure again")
    record = cfg.table(cfg.governance.erasures_table)
    done = []
    # Each table is recorded as soon as it is erased: a run stopped half-way leaves a true record, and a
    # rerun finds only the tables still to do.
    for table, _ in found:
        done.append(_erase_table(spark, table, keys, now, token, who.name))
        append_rows(spark, record, done[-1:], spark_schema(Erasure))
    online = [Erasure(now, token, o.view, None, None, o.rows, 0, who.name) for o in erase_online(cfg, subject) if o.rows]
    if online:
        append_rows(spark, record, online, spark_schema(Erasure))
    done += online
    keys.unpersist()
    if done:
        audit.report(cfg, who, "erase", "ok", detail=f"subject {token[:16]}: {sum(e.rows_removed for e in done)} rows",
                     tables=[e.table if e.version_after is None else f"{e.table}@{e.version_after}" for e in done])
    return done
