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
    assert "gold.predictions (champion): " in out and "gold.predictions_stream (champion): " in out
    assert "drift 2026-03-" in out and "country" in out  # the planted drift, printed


@pytest.mark.slow
def test_demo_reruns_catch_up_then_change_nothing(spark, demo_lake, monkeypatch):
    monkeypatch.setenv("TIDEWATER_CONF_DIR", str(demo_lake.conf_dir))

    # Decision logs record every run, "nothing to do" included, and the audit log every action; everything
    # else must stay put.
    logs = {"meta.lineage", "meta.training_triggers", "meta.deployment_reviews", "meta.audit_log"}

    def versions():
        return {t["name"]: t["version"] for t in table_inventory(demo_lake.cfg) if t["name"] not in logs}

    def demo():
        run_demo(env=demo_lake.env, root=str(demo_lake.root), rows=DEMO_ROWS, days=DEMO_DAYS)

    # A rerun leaves the lakehouse and feature tables alone (the first pass may catch up on labels the
    # last arrival brought: a new training set and a challenger).
    first = versions()
    demo()
    second = versions()
    for name, version in first.items():
        if name.split(".")[0] in ("bronze", "silver", "quarantine") or name in (
                "features.customer_features", "features.merchant_features", "gold.fraud_kpis"):
            assert second[name] == version, name
    # With nothing new, a further rerun adds no table version at all.
    demo()
    assert versions() == second


def test_a_demo_too_small_to_train_says_so_before_it_starts_with_a_size_that_works(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from lakehouse.config import load_config
    from lakehouse.demo import trainable

    root = tmp_path / "tiny"
    done = subprocess.run([str(Path(sys.executable).parent / "tidewater"), "demo", "--rows", "5000", "--days", "6",
                           "--root", str(root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not root.exists()  # nothing generated, nothing written
    assert "error: --rows 5000 --days 6 is too small to train" in done.stderr
    hint = next(line for line in done.stderr.splitlines() if line.startswith("hint: the smallest that works: "))
    words = hint.split(": ", 2)[2].split()
    rows, days = int(words[words.index("--rows") + 1]), int(words[words.index("--days") + 1])
    cfg = load_config("local")
    assert trainable(cfg, rows, days) and not trainable(cfg, rows * (days - 1) // days, days - 1)
    assert trainable(cfg, cfg.generator.rows, cfg.generator.days)  # the default demo trains


def test_a_demo_whose_warm_up_is_shorter_than_the_longest_window_says_so_before_it_starts():
    from lakehouse.config import load_config
    from lakehouse.demo import check_size
    from lakehouse.errors import ConfigError

    cfg = load_config("local")
    short = cfg.model_copy(update={"generator": cfg.generator.model_copy(update={"warmup_days": 7})})
    with pytest.raises(ConfigError, match="warmup_days is 7, but features need 30 day"):
        check_size(short, cfg.generator.rows, cfg.generator.days)
    check_size(cfg, cfg.generator.rows, cfg.generator.days)  # the default demo's 30 days are enough
