"""The quality gate the jobs call before writing: declared checks, policies, quarantine, results."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import CheckConf, Config
from lakehouse.errors import QualityGateFailed
from lakehouse.gates import GateVerdict, SchemaScreen
from lakehouse.quarantine import as_quarantine_rows
from lakehouse.refine import OVERSIZED
from lakehouse.tables import current_version
from quality.engines import CheckResult, run_contract, run_expectations
from quality.engines import load as load_engines
from quality.results import STATUS_FOR_POLICY, ResultRow, write_results
from quality.rules import failing_rows
from quality.schema_changes import detect_shape_changes


DATED_BATCH = r"^batch-[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def data_time(df: DataFrame) -> dt.datetime | None:
    """'Now' for freshness: the end of the newest dated arrival batch (`batch-YYYY-MM-DD`) in the rows.

    Other folder names (`batch-backfill`) are arrivals too, but say nothing about time; without a
    dated batch the checks use the clock.
    """
    if "_batch_id" not in df.columns:
        return None
    # A batch of rows holds a few arrival folders: their names are matched here, not on every row.
    dated = [b for (b,) in df.select("_batch_id").distinct().collect() if b is not None and re.search(DATED_BATCH, b)]
    newest = max(dated, default=None)
    try:
        day = dt.date.fromisoformat(newest[len("batch-"):]) if newest else None
    except ValueError:  # batch-2026-13-45
        return None
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc) if day else None


def _fails(check: CheckConf) -> Column:
    """`failing_rows` as true or false: a row the check cannot judge (null) is not failed by it."""
    return F.coalesce(failing_rows(check), F.lit(False))


def run_checks(spark: SparkSession, table: str, df: DataFrame, checks: list[CheckConf]
               ) -> tuple[list[CheckResult], DataFrame, DataFrame | None]:
    """GE on every row, then Soda on the rows that stay; returns results, kept rows, quarantined rows."""
    row_checks = [c for c in checks if c.engine == "great_expectations"]
    dataset_checks = [c for c in checks if c.engine == "soda"]
    results = run_expectations(df, row_checks, suite_name=table.replace(".", "_"))
    to_quarantine = [r.check for r in results if not r.passed and r.check.policy == "quarantine"]
    kept, quarantined = df, None
    if to_quarantine:
        reason, detail = F.lit(None).cast("string"), F.lit(None).cast("string")
        for check in reversed(to_quarantine):  # the first failing check in conf order names the row
            hit = _fails(check)
            reason = F.when(hit, F.lit(check.name)).otherwise(reason)
            detail = F.when(hit, F.concat(F.lit(f"{check.check} on {check.column}: "),
                                          F.coalesce(F.col(check.column).cast("string"), F.lit("null"))))\
                .otherwise(detail)
        flagged = df.withColumn("reason", reason).withColumn("detail", detail)
        kept = flagged.where(F.col("reason").isNull()).drop("reason", "detail")
        quarantined = as_quarantine_rows(flagged.where(F.col("reason").isNotNull()))
    now = data_time(kept) if any(c.check == "freshness" for c in dataset_checks) else None
    results += run_contract(spark, kept, dataset_checks, view=table.replace(".", "_"), now=now)
    return results, kept, quarantined


class DeclaredChecksGate:
    """Applies conf `quality.<table>` checks with their warn / quarantine / fail policies."""

    def may_quarantine(self, cfg: Config, table: str, columns: list[str]) -> Column:
        """True for a row `check` may quarantine: one a quarantine-policy row check fails on (any
        row, where such a check reads a column not among `columns`). Until the gate has run, the
        rows it may quarantine keep their raw payload; the others need not."""
        table_conf = cfg.quality.get(table)
        checks = [c for c in (table_conf.checks if table_conf else [])
                  if c.engine == "great_expectations" and c.policy == "quarantine"]
        if any(c.column not in columns for c in checks):
            return F.lit(True)
        return functools.reduce(lambda a, b: a | b, [_fails(c) for c in checks], F.lit(False))

    def prepare(self) -> None:
        load_engines()

    def checks(self, cfg: Config, table: str) -> bool:
        """Whether this table has a schema policy or checks: such tables are checked one at a time
        (GE's context is one per process), the others may be refined beside them and each other."""
        return table in cfg.quality

    def screen_schema(self, spark: SparkSession, cfg: Config, table: str, batch: DataFrame, *,
                      fields: tuple[str, ...], types: dict[str, str], job: str, run_id: str,
                      batch_id: str, payload: DataFrame | None = None) -> SchemaScreen:
        """Apply the table's schema_policy to files whose shape changed (`batch`: classified rows;
        `payload`: the same rows with every raw line, where `batch` keeps only some)."""
        table_conf = cfg.quality.get(table)
        if table_conf is None:
            return SchemaScreen(passed=batch, quarantined=None)
        policy = table_conf.schema_policy
        payload = batch if payload is None else payload
        changes = detect_shape_changes(batch, fields, types, payload)
        now = dt.datetime.now(dt.timezone.utc)
        status = {"evolve": "warned", "quarantine_batch": "quarantined", "fail": "failed"}[policy]
        rows = [ResultRow(run_id, job, table, None, batch_id, "schema", "schema_change", policy,
                          status if changes else "passed",
                          "; ".join(c.describe() for c in changes) or "no shape change",
                          None, None, now)]
        if not changes:
            return SchemaScreen(passed=batch, quarantined=None, results=rows)
        if policy == "fail":
            write_results(spark, cfg, [dataclasses.replace(r, table_version=current_version(spark, cfg.table(table)))
                                       for r in rows])
            raise QualityGateFailed(f"schema change in the source of {table}: {rows[0].observed_value}; "
                                    f"schema_policy is fail, {table} was not written",
                                    hint=f"set quality.{table}.schema_policy to evolve or quarantine_batch, "
                                         "or fix the source")
        if policy == "evolve":
            new = tuple(sorted({f for c in changes for f in c.new_fields}))
            return SchemaScreen(passed=batch, quarantined=None, new_fields=new, results=rows)
        files = [c.source_file for c in changes]
        detail = F.create_map(*[x for c in changes for x in (F.lit(c.source_file), F.lit(c.describe()))])
        # A file's oversized lines stay refused as oversized: no parser saw them, nor the screen.
        hit = F.col("_source_file").isin(files) & ~F.coalesce(F.col("reason") == OVERSIZED, F.lit(False))
        quarantined = as_quarantine_rows(payload.where(hit).withColumn("reason", F.lit("schema_change"))
                                         .withColumn("detail", F.try_element_at(detail, F.col("_source_file"))))
        rows[0].rows_failing = None
        return SchemaScreen(passed=batch.where(~hit), quarantined=quarantined, results=rows)

    def check(self, spark: SparkSession, cfg: Config, table: str, df: DataFrame, *, job: str, run_id: str,
              batch: str, prior_rejections: dict[str, int] | None = None) -> GateVerdict:
        now = dt.datetime.now(dt.timezone.utc)
        rows = [ResultRow(run_id, job, table, None, batch, "refine", reason, "quarantine", "quarantined",
                          f"{n} rows", None, n, now) for reason, n in sorted((prior_rejections or {}).items())]
        table_conf = cfg.quality.get(table)
        if table_conf is None or not table_conf.checks:
            return GateVerdict(passed=df, quarantined=None, results=rows)
        results, kept, quarantined = run_checks(spark, table, df, table_conf.checks)
        rows += [_result_row(r, run_id, job, table, batch, now) for r in results]
        failed = [r for r in results if not r.passed and r.check.policy == "fail"]
        if failed:
            unchanged = current_version(spark, cfg.table(table))
            write_results(spark, cfg, [dataclasses.replace(r, table_version=unchanged) for r in rows])
            names = ", ".join(f"{r.check.name} ({r.observed})" for r in failed)
            raise QualityGateFailed(
                f"quality gate failed on {table}: {names}; {table} was not written",
                hint=f"see `tidewater sql \"SELECT * FROM gold.quality_results WHERE run_id = '{run_id}'\"`")
        return GateVerdict(passed=kept, quarantined=quarantined, results=rows)

    def record(self, spark: SparkSession, cfg: Config, verdict: GateVerdict, table_version: int | None) -> None:
        write_results(spark, cfg, [dataclasses.replace(r, table_version=table_version) for r in verdict.results])


def _result_row(r: CheckResult, run_id: str, job: str, table: str, batch: str, now: dt.datetime) -> ResultRow:
    status = "passed" if r.passed else STATUS_FOR_POLICY[r.check.policy]
    return ResultRow(run_id, job, table, None, batch, r.check.engine, r.check.name, r.check.policy, status,
                     r.observed, r.rows_checked, r.rows_failing, now)
