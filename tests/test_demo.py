"""The demo, end to end on a small scenario: every stage runs and the summary says what it made."""

import pytest

from lakehouse.demo import run_demo


@pytest.mark.slow
def test_demo_runs_every_stage_and_summarizes(spark, tmp_path, capsys):
    inventory = run_demo(root=str(tmp_path), rows=1500, days=3)
    names = {t["name"] for t in inventory}
    for table in ("bronze.transactions_raw", "silver.transactions", "quarantine.transactions", "gold.fraud_kpis",
                  "gold.quality_results", "features.customer_features", "features.training_set", "meta.lineage"):
        assert table in names, table
    out = capsys.readouterr().out
    assert "Quality: checks run" in out and "failed 0" in out
    assert "Online lookup (sqlite): customer_id=" in out

    # A second demo on the same root reuses the landing data and changes no table.
    again = run_demo(root=str(tmp_path), rows=1500, days=3)
    assert {t["name"]: t["version"] for t in again if t["name"] not in ("meta.lineage",)} == \
           {t["name"]: t["version"] for t in inventory if t["name"] not in ("meta.lineage",)}
