"""The registry as scoring and operators see it: each version's own threshold, alias history, who decided,
and a registry that cannot answer changes nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from lakehouse.model_store import RegistryUnavailable, tracking_uri
from lakehouse.tables import current_version, read_table
from training.validation import validate_model

TIDEWATER = str(Path(sys.executable).parent / "tidewater")


def tw(lake, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TIDEWATER_CONF_DIR": str(lake.conf_dir)}
    return subprocess.run([TIDEWATER, *args, "--root", str(lake.root), "--env", lake.env], capture_output=True,
                          text=True, env=env, timeout=300)


def aliases(cfg) -> dict[str, str]:
    return dict(MlflowClient(tracking_uri(cfg), tracking_uri(cfg)).get_registered_model(cfg.training.model_name).aliases)


@pytest.mark.slow
def test_scoring_decides_at_the_threshold_validation_stored_on_the_version(spark, demo_lake):
    cfg = demo_lake.cfg
    client = MlflowClient(tracking_uri(cfg), tracking_uri(cfg))
    for table in ("gold.predictions", "gold.predictions_stream"):
        rows = read_table(spark, cfg.table(table)).groupBy("model_version", "threshold").agg(
            F.count("*").alias("n"), F.sum((F.col("decision") != (F.col("score") >= F.col("threshold")).cast("int"))
                                           .cast("int")).alias("wrong")).collect()
        assert rows, table
        for r in rows:
            tags = client.get_model_version(cfg.training.model_name, str(r["model_version"])).tags
            assert r["threshold"] == float(tags["tidewater.threshold"]) and r["wrong"] == 0, (table, r)
            assert tags["tidewater.threshold_rule"].startswith(("precision", "no threshold", "flags"))
    decision = read_table(spark, cfg.table("meta.model_decisions")).orderBy("decided_at").first()
    assert 0 < decision["threshold"] < 1 and decision["threshold_rule"]


@pytest.mark.slow
def test_every_alias_move_is_recorded_and_models_history_lists_it(spark, demo_lake):
    cfg = demo_lake.cfg
    champion = int(aliases(cfg)["champion"])
    moves = read_table(spark, cfg.table("meta.model_deployments")).orderBy("deployed_at").collect()
    promotions = [m for m in moves if m["alias"] == "champion" and m["action"] == "promote"]
    assert promotions and promotions[-1]["to_version"] == champion  # the last promotion is who serves now
    assert promotions[0]["from_version"] is None  # the first champion replaced nobody
    assert all(m["actor"] and m["reason"] and m["run_id"] for m in moves)
    # The challenger alias moved once per registered version before any promotion of it
    challenged = {m["to_version"] for m in moves if m["action"] == "challenge"}
    assert {m["to_version"] for m in promotions} <= challenged
    done = tw(demo_lake, "models", "history", "--format", "json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(r["alias"], r["action"], r["to_version"]) for r in listed] == \
           [(m["alias"], m["action"], m["to_version"]) for m in moves]
    table = tw(demo_lake, "models", "history")
    assert table.returncode == 0 and "promote" in table.stdout


@pytest.mark.slow
def test_models_decided_names_the_version_route_and_why_it_was_serving(spark, demo_lake):
    cfg = demo_lake.cfg
    batch = read_table(spark, cfg.table("gold.predictions")).select("txn_id")
    streamed = read_table(spark, cfg.table("gold.predictions_stream")).select("txn_id")
    txn = batch.join(streamed, "txn_id").orderBy("txn_id").first()["txn_id"]  # scored by both paths
    done = tw(demo_lake, "models", "decided", txn, "--format", "json")
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert {a["table"] for a in answers} == {"gold.predictions", "gold.predictions_stream"}
    for table in ("gold.predictions", "gold.predictions_stream"):  # exactly one deciding row per scoring path
        assert sum(a["decided"] for a in answers if a["table"] == table) == 1
    for a in answers:
        row = read_table(spark, cfg.table(a["table"])).where(
            (F.col("txn_id") == txn) & (F.col("route") == a["route"])).first()
        assert (a["model_version"], a["alias"], a["decision"]) == (row["model_version"], row["model_alias"], row["decision"])
        move = "promote by " if a["decided"] else f"{a['route']}_start by "  # a shadow scored, it did not decide
        assert a["serving_because"].startswith(move) and a["serving_since"] <= a["scored_at"]
    missing = tw(demo_lake, "models", "decided", "T-NOPE")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no prediction for transaction 'T-NOPE'")


@pytest.mark.slow
def test_a_registry_that_cannot_be_read_changes_no_alias(spark, demo_lake):
    cfg = demo_lake.cfg
    before = aliases(cfg)
    decisions = current_version(spark, cfg.table("meta.model_decisions"))
    store = tracking_uri(cfg).removeprefix("sqlite:///")
    # Given another process holding the MLflow store locked (MLflow waits out its busy timeout, then fails)
    lock = sqlite3.connect(store, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        # When validation runs, then it stops with a one-line reason instead of taking "no champion" for an answer
        with pytest.raises(RegistryUnavailable, match="could not read"):
            validate_model(spark, cfg, model_version=int(before["champion"]))
    finally:
        lock.rollback()
        lock.close()
    assert aliases(cfg) == before
    assert current_version(spark, cfg.table("meta.model_decisions")) == decisions
