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
from lakehouse.tables import commit_metrics, current_version, read_table

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


def run_driver(*args, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", DRIVER, *args, "--format", "json"], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=PROJECT, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def metadata(demo_lake, *args) -> tuple[str, dict]:
    done = run_driver(*args, "--root", str(demo_lake.root), "--env", demo_lake.env,
                      env={"TIDEWATER_CONF_DIR": str(demo_lake.conf_dir)})
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
        if name == "meta.audit_log":  # the command's own row lands after it listed the tables
            continue
        ref = demo_lake.cfg.table(name)
        version = current_version(spark, ref)
        assert (t["version"], t["rows"]) == (version, read_table(spark, ref, version).count()), name


@pytest.mark.slow
def test_versions_and_commit_metrics_read_from_the_log_are_sparks_history(spark, demo_lake):
    from delta.tables import DeltaTable

    cfg = demo_lake.cfg
    written = [cfg.table(n) for n in cfg.table_names() if current_version(spark, cfg.table(n)) is not None]
    assert len(written) >= 15
    for ref in written:
        history = DeltaTable.forPath(spark, ref.path).history().select("version", "operationMetrics").collect()
        assert current_version(spark, ref) == max(h["version"] for h in history), ref.name
        for h in history[:3]:
            expected = {k: int(v) for k, v in (h["operationMetrics"] or {}).items() if v.lstrip("-").isdigit()}
            assert commit_metrics(spark, ref, h["version"]) == expected, (ref.name, h["version"])


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


def spark_table(spark, path: str, properties: dict[str, str], statements: list[str]) -> None:
    """A Delta table written by Spark with these table properties, then these statements ({t} is the table)."""
    props = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
    spark.sql(f"CREATE TABLE delta.`{path}` (id BIGINT, name STRING) USING DELTA"
              + (f" TBLPROPERTIES ({props})" if props else ""))
    for statement in statements:
        spark.sql(statement.format(t=f"delta.`{path}`"))


def inserts(n: int) -> list[str]:
    return [f"INSERT INTO {{t}} SELECT id, CAST(id AS STRING) FROM range({i * 10}, {i * 10 + 10})" for i in range(n)]


@pytest.mark.slow
def test_tables_reads_what_spark_delta_writes_without_a_jvm(spark, tmp_path):
    from lakehouse.config import load_config

    # Given tables Spark's Delta wrote with a checkpoint, a MERGE, deletion vectors, column mapping, v2 checkpoints
    cfg = load_config("local", root=tmp_path)
    spark_table(spark, cfg.table("silver.transactions").path, {}, inserts(12))  # checkpoint at v10
    spark_table(spark, cfg.table("silver.labels").path, {}, [
        "INSERT INTO {t} SELECT id, 'a' FROM range(100)",
        "MERGE INTO {t} t USING (SELECT id, 'b' AS name FROM range(50, 150)) s ON t.id = s.id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"])
    spark_table(spark, cfg.table("gold.fraud_kpis").path, {"delta.enableDeletionVectors": "true"}, [
        "INSERT INTO {t} SELECT id, 'a' FROM range(100)", "DELETE FROM {t} WHERE id % 3 = 0"])
    spark_table(spark, cfg.table("gold.merchant_daily").path, {"delta.columnMapping.mode": "name"}, [
        "INSERT INTO {t} SELECT id, 'a' FROM range(100)", "ALTER TABLE {t} RENAME COLUMN name TO label"])
    spark_table(spark, cfg.table("gold.customer_daily_spend").path, {"delta.checkpointPolicy": "v2"}, inserts(11))
    # When the tables are listed
    done = run_driver("tables", "--root", str(tmp_path), "--env", "local")
    listed = {t["name"]: t for t in json.loads(done.stdout)}
    # Then versions and row counts are Spark's, without a JVM and without falling back
    assert not json.loads(done.stderr.strip().splitlines()[-1])["pyspark_loaded"]
    assert "note:" not in done.stderr
    assert len(listed) == 5
    for name, t in listed.items():
        ref = cfg.table(name)
        version = current_version(spark, ref)
        assert (t["version"], t["rows"]) == (version, read_table(spark, ref, version).count()), name
    # and rows come back as Spark reads them: deleted rows gone, columns under their logical names
    from lakehouse.delta_reader import read_rows
    assert sorted(r["id"] for r in read_rows(cfg, "gold.fraud_kpis")) == [i for i in range(100) if i % 3]
    assert set(read_rows(cfg, "gold.merchant_daily")[0]) == {"id", "label"}


@pytest.mark.slow
def test_a_table_delta_rs_cannot_read_falls_back_to_spark_with_a_note(spark, tmp_path):
    from lakehouse.config import load_config

    # Given a table whose column type was widened (a reader feature delta-rs 1.6 does not read)
    cfg = load_config("local", root=tmp_path)
    path = cfg.table("gold.fraud_kpis").path
    spark.sql(f"CREATE TABLE delta.`{path}` (id INT, name STRING) USING DELTA "
              "TBLPROPERTIES ('delta.enableTypeWidening' = 'true')")
    spark.sql(f"INSERT INTO delta.`{path}` SELECT CAST(id AS INT), 'a' FROM range(10)")
    spark.sql(f"ALTER TABLE delta.`{path}` ALTER COLUMN id TYPE BIGINT")
    spark.sql(f"INSERT INTO delta.`{path}` SELECT id, 'b' FROM range(10, 15)")
    # When the tables are listed
    done = run_driver("tables", "--root", str(tmp_path), "--env", "local", timeout=300)
    # Then the command says so in one line, reads with Spark, and reports what Spark reports
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "gold.fraud_kpis" in notes[0] and "typeWidening" in notes[0]
    assert json.loads(done.stdout) == [{"name": "gold.fraud_kpis", "version": current_version(spark, cfg.table("gold.fraud_kpis")),
                                        "rows": 15, "path": path}]
