"""Work that may overlap: entities no gate checks are refined together, gold's tables are built together;
their small writes meet."""

import threading
import time
from dataclasses import dataclass

import pytest

from lakehouse.config import load_config
from lakehouse.schemas import spark_schema
from lakehouse.tables import append_rows
from lakehouse.threads import side_by_side
from quality.gates import DeclaredChecksGate


def test_the_gate_checks_the_tables_with_declared_checks_and_no_others(tmp_path):
    cfg = load_config("local", root=tmp_path)
    gate = DeclaredChecksGate()
    assert [t for t in ("silver.merchants", "silver.customers", "silver.transactions", "silver.labels")
            if gate.checks(cfg, t)] == ["silver.transactions", "silver.labels"]


def test_tasks_run_at_once_and_the_first_failure_is_raised_after_all_ended():
    started, ended = threading.Barrier(3, timeout=10), []

    def ok(name):
        def task():
            started.wait()  # each task waits for the others: only tasks that overlap get past this
            time.sleep(0.05)
            ended.append(name)
        return task

    def fails():
        started.wait()
        raise ValueError("customers: bad batch")

    with pytest.raises(ValueError, match="customers: bad batch"):
        side_by_side([ok("merchants"), fails, ok("devices")])
    assert sorted(ended) == ["devices", "merchants"]


def test_results_come_back_in_the_order_of_the_tasks_however_they_finish():
    started = threading.Barrier(3, timeout=10)

    def after(seconds, value):
        def task():
            started.wait()
            time.sleep(seconds)
            return value
        return task

    assert side_by_side([after(0.2, "spend"), after(0.0, "merchants"), after(0.1, "kpis")]) == \
        ["spend", "merchants", "kpis"]


@dataclass
class Outcome:
    check: str
    rows_failing: int


def test_two_writers_that_both_find_no_table_both_get_their_rows_in(spark, tmp_path):
    cfg = load_config("local", root=tmp_path)
    ref = cfg.table("gold.quality_results")
    side_by_side([lambda name=name: append_rows(spark, ref, [Outcome(name, 1)], spark_schema(Outcome))
                  for name in ("merchants_malformed", "customers_malformed", "labels_malformed")])
    rows = spark.read.format("delta").load(ref.path).collect()
    assert sorted(r["check"] for r in rows) == ["customers_malformed", "labels_malformed", "merchants_malformed"]
