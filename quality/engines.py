"""Running checks on a Spark DataFrame with Great Expectations (rows) and Soda (dataset).

Both read the DataFrame where it is: GE through its Spark datasource, Soda through a global
temporary view on the same session. Nothing is converted to pandas.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml
from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import CheckConf

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("SODA_TELEMETRY_DISABLED", "true")


@dataclass
class CheckResult:
    """What one check observed on one DataFrame."""

    check: CheckConf
    passed: bool
    observed: str
    rows_checked: int | None
    rows_failing: int | None


_CONTEXT = threading.Lock()


def _gx_context():
    with _CONTEXT:  # one context, whether a job's first check or the gate's prepare() asks first
        return _new_gx_context()


@lru_cache(maxsize=1)
def _new_gx_context():
    import great_expectations as gx

    if not os.environ.get("TIDEWATER_DEBUG"):
        # GE sets some of its module loggers to INFO at import; our results table is the record.
        for name in ("great_expectations", "great_expectations.data_context.types.base"):
            logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    return context


def load() -> None:
    """Import both engines and make GE's context: seconds of Python a job spends in a thread while
    Spark starts, not before its first check."""
    _gx_context()
    _soda_source_module()


def run_expectations(df: DataFrame, checks: list[CheckConf], suite_name: str) -> list[CheckResult]:
    """Validate row-level checks with a Great Expectations suite over the Spark DataFrame."""
    import great_expectations as gx

    from quality.rules import expectation

    if not checks:
        return []
    context = _gx_context()
    uid = uuid.uuid4().hex[:8]
    # persist=False: GE would cache each batch it is given, again, and never release it; the callers
    # hand it rows already cached (a silver batch) or checkpointed (a gold table).
    source = context.data_sources.add_spark(f"spark_{uid}", persist=False)
    batch = source.add_dataframe_asset(f"{suite_name}_{uid}").add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_name}_{uid}",
                                                   expectations=[expectation(c) for c in checks]))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_{uid}", data=batch, suite=suite))
    try:
        # Counts only: no sample of unexpected values (a Spark job per expectation) nor their value
        # counts (a group-by per expectation); the quarantine holds every failing row with its reason.
        outcome = validation.run(batch_parameters={"dataframe": df},
                                 result_format={"result_format": "BASIC", "partial_unexpected_count": 0})
    finally:
        context.validation_definitions.delete(validation.name)
        context.suites.delete(suite.name)
        context.data_sources.delete(source.name)
    by_name = {c.name: c for c in checks}
    results = []
    for r in outcome.results:
        check = by_name[r.expectation_config.meta["check"]]
        if r.exception_info and r.exception_info.get("raised_exception"):
            message = r.exception_info.get("exception_message") or "expectation raised"
            results.append(CheckResult(check, False, f"error: {message}", None, None))
            continue
        failing = r.result.get("unexpected_count")
        results.append(CheckResult(check, bool(r.success),
                                   f"{r.result.get('unexpected_percent') or 0.0:.4f}% unexpected",
                                   r.result.get("element_count"), failing))
    return results


def _soda_source_module():
    from soda_core.contracts import verify_contract_locally  # noqa: F401 - load soda_core first

    from quality import soda_source

    return soda_source


def run_contract(spark: SparkSession, df: DataFrame, checks: list[CheckConf], view: str,
                 now: dt.datetime | None = None) -> list[CheckResult]:
    """Verify dataset-level checks with a Soda v4 data contract over a global temp view of df."""
    from soda_core.contracts import verify_contract_locally

    from quality.rules import contract

    if not checks:
        return []
    view = f"{view}_{uuid.uuid4().hex[:8]}"
    df.createOrReplaceGlobalTempView(view)
    now = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    spec = contract(f"tidewater_spark/global_temp/{view}", checks, first_column=df.columns[0])
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    try:
        source = _soda_source_module().data_source(spark, "tidewater_spark")
        session = verify_contract_locally(data_sources=[source],
                                          contract_file_path=f.name, variables={"NOW": now})
    finally:
        os.unlink(f.name)
        spark.catalog.dropGlobalTempView(view)
    by_name = {c.name: c for c in checks}
    results: list[CheckResult] = []
    for verification in session.contract_verification_results:
        for r in verification.check_results:
            check = by_name.get(r.check.name)
            if check is None:
                continue
            metrics: dict[str, Any] = r.diagnostic_metric_values or {}
            failing = metrics.get("missing_count") if check.check == "missing_percent" else \
                metrics.get("duplicate_count") if check.check == "duplicate_percent" else \
                metrics.get("invalid_count") if check.check == "invalid_percent" else None
            results.append(CheckResult(check, bool(r.is_passed), _observed(check, r.threshold_value, metrics),
                                       metrics.get("dataset_rows_tested"), failing))
    missing = set(by_name) - {r.check.name for r in results}
    if missing:
        errors = session.get_errors_str() if session.has_errors() else "no result"
        for name in sorted(missing):
            results.append(CheckResult(by_name[name], False, f"error: {errors[:300]}", None, None))
    return results


def _observed(check: CheckConf, value: Any, metrics: dict[str, Any]) -> str:
    if check.check == "freshness":
        return f"{metrics.get('freshness_in_hours', value)} hours"
    if check.check == "schema":
        return f"{metrics.get('schema_events_count', value)} schema differences"
    if check.check.endswith("_percent"):
        return f"{value}%"
    return str(value)
