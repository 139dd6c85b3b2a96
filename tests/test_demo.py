"""The demo, end to end (conftest's demo_lake): every stage runs and the summary says what it made."""

import pytest

from lakehouse.demo import run_demo
from lakehouse.delta_reader import table_inventory
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
def test_demo_reruns_catch_up_then_change_nothing(spark, demo_lake, monkeypatch):
    monkeypatch.setenv("TIDEWATER_CONF_DIR", str(demo_lake.conf_dir))

    def versions():
        return {t["name"]: t["version"] for t in table_inventory(demo_lake.cfg) if t["name"] != "meta.lineage"}

    def demo():
        run_demo(env=demo_lake.env, root=str(demo_lake.root), rows=DEMO_ROWS, days=DEMO_DAYS)

    # The new arrival brought labels after the training set was built: a rerun catches up on them
    # (new training set, a trained challenger) and leaves the lakehouse and feature tables alone.
    first = versions()
    demo()
    second = versions()
    for name, version in first.items():
        if name.split(".")[0] in ("bronze", "silver", "quarantine") or name in (
                "features.customer_features", "features.merchant_features", "gold.fraud_kpis"):
            assert second[name] == version, name
    assert second["features.training_set"] == first["features.training_set"] + 1
    assert second["meta.model_decisions"] > first["meta.model_decisions"]
    # With nothing new, a further rerun adds no table version at all.
    demo()
    assert versions() == second
