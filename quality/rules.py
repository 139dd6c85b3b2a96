"""One check vocabulary, three renderings: a Spark predicate, a GE expectation, a Soda contract entry.

A check is declared once in conf (`quality:` in conf/base.yaml). Great Expectations measures the
row-level rules and Soda the dataset-level ones; the Spark predicate of a row-level rule is what
routes failing rows to quarantine (the tests hold its count equal to GE's unexpected_count).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from lakehouse.config import CheckConf

if TYPE_CHECKING:
    import great_expectations as gx


def failing_rows(check: CheckConf) -> Column:
    """True for rows that break a row-level check (null counts as failing only for not_null)."""
    col = F.col(check.column)
    if check.check == "not_null":
        return col.isNull()
    if check.check == "between":
        bad = F.lit(False)
        if check.min is not None:
            bad = bad | (col < F.lit(check.min))
        if check.max is not None:
            bad = bad | (col > F.lit(check.max))
        return col.isNotNull() & bad
    if check.check == "in_set":
        return col.isNotNull() & ~col.isin(*check.values)
    if check.check == "regex":
        return col.isNotNull() & ~col.cast("string").rlike(check.pattern)
    raise ValueError(f"{check.check} is not a row-level rule with a per-row predicate")


def expectation(check: CheckConf) -> gx.expectations.Expectation:
    """The Great Expectations expectation for a row-level check."""
    import great_expectations as gx  # seconds to import: the gate's prepare() does it in a thread

    meta = {"check": check.name, "policy": check.policy}
    if check.check == "not_null":
        return gx.expectations.ExpectColumnValuesToNotBeNull(column=check.column, meta=meta)
    if check.check == "between":
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=check.column, min_value=check.min, max_value=check.max, meta=meta)
    if check.check == "in_set":
        return gx.expectations.ExpectColumnValuesToBeInSet(column=check.column, value_set=check.values, meta=meta)
    if check.check == "regex":
        return gx.expectations.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.pattern, meta=meta)
    if check.check == "unique":
        return gx.expectations.ExpectColumnValuesToBeUnique(column=check.column, meta=meta)
    raise ValueError(f"{check.check} is a dataset-level check (Soda), not an expectation")


def _threshold(check: CheckConf, metric: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"metric": metric} if metric else {}
    if check.min is not None:
        t["must_be_greater_than_or_equal"] = check.min
    if check.max is not None:
        t["must_be_less_than_or_equal"] = check.max
    return t


def contract(dataset: str, checks: list[CheckConf], first_column: str) -> dict[str, Any]:
    """A Soda v4 data contract for the dataset-level checks (as a dict, dumped to YAML).

    Soda requires a `columns` list: without column checks it names `first_column` alone, so a
    schema check still sees only the columns the checks declared.
    """
    dataset_checks: list[dict] = []
    columns: dict[str, list[dict]] = {}
    for c in checks:
        if c.check == "row_count":
            dataset_checks.append({"row_count": {"name": c.name, "threshold": _threshold(c)}})
        elif c.check == "freshness":
            dataset_checks.append({"freshness": {
                "name": c.name, "column": c.column, "now_variable": "NOW",
                "threshold": {"unit": "hour", "must_be_less_than_or_equal": c.max}}})
        elif c.check == "schema":
            dataset_checks.append({"schema": {"name": c.name, "allow_extra_columns": True,
                                              "allow_other_column_order": True}})
            for name in c.columns:
                columns.setdefault(name, [])
        elif c.check == "missing_percent":
            columns.setdefault(c.column, []).append({"missing": {"name": c.name, "threshold": _threshold(c, "percent")}})
        elif c.check == "duplicate_percent":
            columns.setdefault(c.column, []).append({"duplicate": {"name": c.name, "threshold": _threshold(c, "percent")}})
        elif c.check == "invalid_percent":
            columns.setdefault(c.column, []).append({"invalid": {
                "name": c.name, "valid_values": c.values, "threshold": _threshold(c, "percent")}})
    out: dict[str, Any] = {"dataset": dataset, "variables": {"NOW": {"default": "now"}}}
    if dataset_checks:
        out["checks"] = dataset_checks
    columns = columns or {first_column: []}
    out["columns"] = [{"name": n, **({"checks": cs} if cs else {})} for n, cs in columns.items()]
    return out
