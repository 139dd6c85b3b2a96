"""The `tidewater` command and spark-submit entry points, run as a user would run them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tidewater_in_process

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tw(*args, env=None, timeout=300):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(BIN / "tidewater"), *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=PROJECT)


@pytest.mark.parametrize("command", [[], ["demo"], ["run"], ["generate"], ["tables"], ["sql"], ["lineage"],
                                     ["models"], ["mlflow-ui"], ["stream"], ["stream", "start"], ["stream", "status"],
                                     ["stream", "stop"], ["drift", "report"], ["services"], ["services", "start"],
                                     ["services", "stop"], ["services", "status"], ["services", "run"],
                                     ["services", "airflow-dag"], ["run", "record_decisions"]])
def test_every_command_has_help(command):
    result = tw(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout or "usage:" in result.stdout


@pytest.mark.parametrize("job", ["ingest_bronze", "refine_silver", "build_gold", "train", "score_batch",
                                 "score_stream", "detect_drift", "record_decisions"])
def test_every_job_has_help_both_ways(job):
    via_cli = tw("run", job, "--help")
    assert via_cli.returncode == 0 and "--root" in via_cli.stdout and "--env" in via_cli.stdout
    direct = subprocess.run([sys.executable, f"jobs/{job}.py", "--help"], capture_output=True, text=True, cwd=PROJECT)
    assert direct.returncode == 0 and direct.stdout == via_cli.stdout


def test_run_lists_the_installed_jobs():
    result = tw("run")
    assert all(j in result.stdout for j in ("ingest_bronze", "refine_silver", "build_gold"))


def test_unknown_job_is_one_line_with_a_hint():
    result = tw("run", "no_such_job")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: no job named 'no_such_job'"
    assert result.stderr.splitlines()[1].startswith("hint: installed jobs:")


def test_malformed_config_is_one_clear_line(tmp_path):
    (tmp_path / "base.yaml").write_text((PROJECT / "conf" / "base.yaml").read_text())
    (tmp_path / "local.yaml").write_text("spark: {master: local[1]\n")
    result = tw("tables", env={"TIDEWATER_CONF_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "local.yaml:" in result.stderr
    assert "Traceback" not in result.stderr


def test_generate_writes_batches_and_manifest(tmp_path):
    result = tw("generate", "--out", str(tmp_path), "--rows", "300", "--days", "2", "--seed", "3",
                "--warmup-days", "1", "--no-drift")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "_manifest.json").read_text())
    assert manifest["rows"] == 300 and manifest["seed"] == 3 and manifest["drift_from_day"] is None
    assert len(manifest["batches"]) == 3 and manifest["warmup_days"] == 1  # one day of history, then two


@pytest.mark.slow
def test_tables_sql_and_lineage_read_the_lakehouse(lake):
    root = str(lake.root)
    tables = tw("tables", "--format", "json", "--root", root)
    assert tables.returncode == 0, tables.stderr
    listed = {t["name"]: t for t in json.loads(tables.stdout)}
    for layer in ("bronze", "silver", "quarantine", "gold", "meta"):
        assert any(name.startswith(layer + ".") for name in listed), layer
    assert listed["silver.transactions"]["rows"] == lake.manifest["expected"]["silver_transactions"]

    first = tw("sql", "--format", "json", "--root", root,
               "SELECT count(*) AS n FROM silver.transactions VERSION AS OF 0")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == [{"n": 0}]  # version 0 is the table's creation

    chain = tw("lineage", "gold.fraud_kpis", "--format", "json", "--root", root)
    assert chain.returncode == 0, chain.stderr
    tree = json.loads(chain.stdout)
    assert tree["produced_by"]["job"] == "build_gold"
    assert {n["table"] for n in tree["inputs"]} == {"silver.transactions", "silver.labels"}

    # An error is one line from the command itself (run in this process: no second JVM for it)
    bad = tidewater_in_process(["sql", "--root", root, "SELECT * FROM silver.nope"])
    assert bad.returncode == 1 and bad.stderr.startswith("error: AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]")
    assert "\tat org.apache" not in bad.stderr


@pytest.mark.slow
def test_spark_submit_runs_a_job_unchanged(lake):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run([str(BIN / "spark-submit"), "jobs/build_gold.py", "--root", str(lake.root)],
                            capture_output=True, text=True, cwd=PROJECT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gold is up to date" in result.stdout + result.stderr  # spark-submit merges the streams
