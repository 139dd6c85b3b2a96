"""The demo, end to end (conftest's demo_lake): every stage runs and the summary says what it made."""

import pytest

from lakehouse.demo import run_demo
from lakehouse.tables_report import table_inventory
from conftest import DEMO_DAYS, DEMO_ROWS


@pytest.mark.slow
def test_demo_runs_every_stage_and_summarizes(spark, demo_lake):
    names = {t["name"] for t in demo_lake.inventory}
    for table in ("bronze.transactions_raw", "silver.transactions", "quarantine.transactions", "gold.fraud_kpis",
                  "gold.quality_results", "features.customer_features", "features.training_set", "meta.lineage",
                  "meta.model_decisions", "gold.predictions", "gold.predictions_stream", "gold.drift_metrics",
                  "gold.model_performance", "meta.drift_events"):
        assert table in names, table
    out = demo_lake.output
    assert "Quality: checks run" in out and "failed 0" in out
    assert "Online lookup (sqlite): customer_id=" in out
    assert "gold.predictions: " in out and "gold.predictions_stream: " in out
    assert "drift 2026-03-" in out and "country" in out  # the planted drift, printed


@pytest.mark.slow
def test_a_second_demo_on_the_same_root_changes_no_table(spark, demo_lake, monkeypatch):
    monkeypatch.setenv("TIDEWATER_CONF_DIR", str(demo_lake.conf_dir))
    before = {t["name"]: t["version"] for t in table_inventory(spark, demo_lake.cfg)}
    again = run_demo(env=demo_lake.env, root=str(demo_lake.root), rows=DEMO_ROWS, days=DEMO_DAYS)
    after = {t["name"]: t["version"] for t in again}
    before.pop("meta.lineage"), after.pop("meta.lineage")
    assert after == before
