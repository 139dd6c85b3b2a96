"""Metadata commands on the demo's lakehouse: no JVM, and one transaction traced to its landing file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from lakehouse.model_store import tracking_uri
from lakehouse.tables import current_version, read_table

PROJECT = Path(__file__).resolve().parent.parent

# Runs a `tidewater` command in-process and reports whether PySpark (and so a JVM) was loaded.
DRIVER = """
import json, sys
from lakehouse.cli import _add_plugin_commands, cli
_add_plugin_commands()
try:
    cli.main(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps({"pyspark_loaded": "pyspark" in sys.modules}), file=sys.stderr)
"""


def metadata(demo_lake, *args) -> tuple[str, dict]:
    env = {**os.environ, "TIDEWATER_CONF_DIR": str(demo_lake.conf_dir)}
    done = subprocess.run([sys.executable, "-c", DRIVER, *args, "--root", str(demo_lake.root), "--env", demo_lake.env,
                           "--format", "json"], capture_output=True, text=True, env=env, cwd=PROJECT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def nodes(node: dict):
    yield node
    for child in node["inputs"]:
        yield from nodes(child)


@pytest.mark.slow
def test_lineage_of_a_transaction_runs_from_its_prediction_to_its_landing_file(spark, demo_lake):
    cfg = demo_lake.cfg
    # Given a transaction the demo scored
    row = read_table(spark, cfg.table("gold.predictions")).orderBy("txn_id").first()
    # When its lineage is asked for
    out, loaded = metadata(demo_lake, "lineage", "--txn", row["txn_id"])
    story = json.loads(out)
    # Then no JVM was needed
    assert not loaded["pyspark_loaded"]
    # and the chain names the model version that scored it, the training set version behind that model ...
    batch = next(p for p in story["predictions"] if p["table"] == "gold.predictions")
    assert (batch["model_version"], batch["run_id"]) == (row["model_version"], row["run_id"])
    chain = list(nodes(batch["chain"]))
    model = next(n for n in chain if n["table"] == f"model:{cfg.training.model_name}")
    assert model["version"] == row["model_version"] and model["produced_by"]["job"] == "train"
    tags = MlflowClient(tracking_uri(cfg)).get_run(row["mlflow_run_id"]).data.tags
    training_set = next(n for n in model["inputs"] if n["table"] == "features.training_set")
    assert str(training_set["version"]) == tags["tidewater.training_set_version"]
    assert {n["table"] for n in training_set["inputs"]} >= {"silver.labels", "features.customer_features"}
    # ... down to silver, bronze and the landing file the transaction arrived in, with code versions
    assert story["silver"]["txn_id"] == row["txn_id"]
    landing = [Path(f.removeprefix("file:")) for f in story["landing_files"]]
    assert landing and all(p.is_file() and p.is_relative_to(cfg.landing_dir) for p in landing)
    assert any(row["txn_id"] in p.read_text() for p in landing)
    assert all(n["produced_by"]["code_version"] for n in chain if n["produced_by"])
    assert any(n.get("txn", {}).get("files") for n in chain)


@pytest.mark.slow
def test_an_unknown_transaction_is_one_line_with_a_hint(demo_lake):
    env = {**os.environ, "TIDEWATER_CONF_DIR": str(demo_lake.conf_dir)}
    done = subprocess.run([str(Path(sys.executable).parent / "tidewater"), "lineage", "--txn", "T-NOPE", "--root",
                           str(demo_lake.root), "--env", demo_lake.env], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no prediction for transaction 'T-NOPE'") and "hint:" in done.stderr


@pytest.mark.slow
def test_tables_reads_versions_and_row_counts_from_the_delta_logs_like_spark(spark, demo_lake):
    out, loaded = metadata(demo_lake, "tables")
    listed = {t["name"]: t for t in json.loads(out)}
    assert not loaded["pyspark_loaded"]
    assert {"silver.transactions", "gold.predictions", "meta.lineage"} <= set(listed)
    for name, t in listed.items():
        ref = demo_lake.cfg.table(name)
        version = current_version(spark, ref)
        assert (t["version"], t["rows"]) == (version, read_table(spark, ref, version).count()), name


@pytest.mark.slow
def test_table_lineage_follows_only_what_each_output_was_built_from(spark, demo_lake):
    out, loaded = metadata(demo_lake, "lineage", "silver.labels")
    tree = json.loads(out)
    assert not loaded["pyspark_loaded"]
    assert tree["produced_by"]["job"] == "refine_silver"
    assert [n["table"] for n in tree["inputs"]] == ["bronze.labels_raw"]
    predictions = json.loads(metadata(demo_lake, "lineage", "gold.predictions")[0])
    assert f"model:{demo_lake.cfg.training.model_name}" in {n["table"] for n in predictions["inputs"]}
    assert read_table(spark, demo_lake.cfg.table("gold.predictions")).where(F.col("run_id").isNull()).count() == 0
