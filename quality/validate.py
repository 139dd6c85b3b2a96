"""`tidewater validate TABLE [--version N]`: a table version's declared checks, on demand (for CI)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.errors import ConfigError, TableNotFound
from lakehouse.tables import current_version, read_table
from quality.engines import CheckResult
from quality.gates import _result_row, run_checks
from quality.results import ResultRow, write_results

JOB = "validate"


@dataclasses.dataclass
class Validation:
    table: str
    version: int
    results: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        """Checks whose policy is `fail` and that failed: these make `validate` exit non-zero."""
        return [r for r in self.results if not r.passed and r.check.policy == "fail"]


def validate_table(spark: SparkSession, cfg: Config, table: str, version: int | None = None) -> Validation:
    """Run every check declared for `table` on one of its versions and record the results."""
    if table not in cfg.quality or not cfg.quality[table].checks:
        raise ConfigError(f"no checks are declared for {table}",
                          hint=f"tables with checks: {', '.join(sorted(cfg.quality)) or 'none'}")
    ref = cfg.table(table)
    latest = current_version(spark, ref)
    if latest is None:
        raise TableNotFound(f"{table} has not been written yet", hint="run the pipeline first")
    version = latest if version is None else version
    if not 0 <= version <= latest:
        raise TableNotFound(f"{table} has no version {version} (latest is {latest})")
    df = read_table(spark, ref, version).persist()  # read once for both engines' queries
    try:
        results, _, _ = run_checks(spark, table, df, cfg.quality[table].checks)
    finally:
        df.unpersist()
    run_id, now = uuid.uuid4().hex[:16], dt.datetime.now(dt.timezone.utc)
    rows: list[ResultRow] = [dataclasses.replace(_result_row(r, run_id, JOB, table, "table", now),
                                                 table_version=version) for r in results]
    write_results(spark, cfg, rows)
    return Validation(table, version, results)
