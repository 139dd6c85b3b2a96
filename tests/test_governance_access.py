"""Given the demo lakehouse, when people and services act on it, then each acts as an identity with a
role: an analyst reads its granted tables only, without PII, and a denial is one line and an audit row;
every job run leaves an audit row; the PII key is in no plan, log, process list or MLflow param; and what
holds PII is readable by its owner only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from delta.tables import DeltaTable

from conftest import tidewater_in_process
from lakehouse import audit, catalog
from lakehouse.config import PROJECT_DIR, load_config
from lakehouse.delta_reader import read_rows, table_version
from lakehouse.grants import PII_COLUMNS
from lakehouse.identity import current_user
from lakehouse.pii import FINGERPRINT_PROPERTY, pii_key, pii_token
from lakehouse.refine import TRANSACTION_RULES, refine
from lakehouse.tables import current_version, read_table, table_properties
from training.launchers import worker_environment


def as_user(scenario, user: str | None, *args: str):
    env = {"TIDEWATER_CONF_DIR": str(scenario.conf_dir), "TIDEWATER_USER": user}
    return tidewater_in_process([*args, "--env", scenario.env, "--root", str(scenario.root)], env=env)


def test_an_analyst_reads_granted_tables_as_views_without_pii(spark, demo_lake, monkeypatch):
    cfg = demo_lake.cfg
    full = catalog.sql(spark, cfg, "SELECT * FROM silver.transactions")
    assert {"card_hash", "email_hash", "ip_hash"} <= set(full.columns)
    monkeypatch.setenv("TIDEWATER_USER", "analyst")
    seen = catalog.sql(spark, cfg, "SELECT * FROM silver.transactions")
    assert set(seen.columns) == set(full.columns) - PII_COLUMNS
    assert seen.count() == full.count()
    # a notebook's query (no command around it) is a row of its own
    mine = [r for r in audit.read(cfg, user="analyst", limit=10_000) if r["surface"] == "library"]
    assert mine[0]["detail"] == audit.fingerprint("SELECT * FROM silver.transactions") and mine[0]["outcome"] == "ok"
    monkeypatch.delenv("TIDEWATER_USER")
    assert "card_hash" in catalog.sql(spark, cfg, "SELECT * FROM silver.transactions").columns  # the engineer again


@pytest.mark.parametrize("query, says", [
    ("SELECT * FROM bronze.transactions_raw", "has no read grant on bronze.transactions_raw"),
    ("SELECT raw FROM quarantine.transactions", "has no read grant on quarantine.transactions"),
    ("SELECT count(DISTINCT card_hash) FROM silver.transactions", "no PII grant: card_hash is masked"),
    ("SELECT * FROM delta.`{root}/tables/bronze/transactions_raw`", "may not read files or tables by path"),
    ("SELECT * FROM _tidewater_raw_silver.transactions", "may not read files or tables by path"),
    ("DELETE FROM gold.fraud_kpis", "may run queries only"),
])
def test_an_analyst_is_denied_in_one_line_and_the_denial_is_audited(demo_lake, query, says):
    query = query.format(root=demo_lake.root)
    result = as_user(demo_lake, "analyst", "sql", query)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: analyst (role analyst)") and says in lines[0]
    assert lines[1].startswith("hint: ") and "Traceback" not in result.stderr
    denied = [r for r in audit.read(demo_lake.cfg, user="analyst", limit=10_000)
              if r["action"] == "sql" and r["outcome"] == "denied" and says in (r["error"] or "")]
    assert denied and denied[0]["role"] == "analyst" and denied[0]["detail"] == audit.fingerprint(query)
    assert query not in json.dumps(denied, default=str)  # a query is recorded by its fingerprint only


def test_an_analyst_query_over_granted_tables_answers_and_is_audited(demo_lake):
    query = "SELECT count(*) AS n FROM silver.transactions"
    result = as_user(demo_lake, "analyst", "sql", "--format", "json", query)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["n"] == len(read_rows(demo_lake.cfg, "silver.transactions", columns=["txn_id"]))
    rows = [r for r in audit.read(demo_lake.cfg, user="analyst", limit=10_000) if r["detail"] == audit.fingerprint(query)]
    assert rows[0]["outcome"] == "ok" and rows[0]["tables"] == ["silver.transactions"]


def test_tables_lists_only_what_the_role_may_read(demo_lake):
    every = {t["name"] for t in json.loads(as_user(demo_lake, None, "tables", "--format", "json").stdout)}
    granted = {t["name"] for t in json.loads(as_user(demo_lake, "analyst", "tables", "--format", "json").stdout)}
    assert "gold.fraud_kpis" in granted and "silver.transactions" in granted and granted < every
    assert not {n for n in granted if n.split(".")[0] in ("bronze", "quarantine", "features", "meta")}


def test_every_job_run_of_the_demo_has_an_audit_row_naming_who_and_which_versions(demo_lake):
    runs = read_rows(demo_lake.cfg, "meta.lineage", columns=["run_id", "job", "status", "actor"])
    audited = {r["run_id"]: r for r in audit.read(demo_lake.cfg, limit=100_000) if r["surface"] == "job"}
    assert runs and {r["run_id"] for r in runs} <= set(audited)
    for run in runs:
        row = audited[run["run_id"]]
        assert run["actor"] == row["actor"] == current_user() and row["action"] == run["job"]
        assert row["outcome"] == ("ok" if run["status"] == "succeeded" else "failed")
    train = [audited[r["run_id"]] for r in runs if r["job"] == "train"]  # recorded in the training env, by Spark
    assert train and all(re.fullmatch(r"\S+ v\d+", m) for row in train for m in row["models"])
    refine_rows = [audited[r["run_id"]] for r in runs if r["job"] == "refine_silver"]
    assert any(t.startswith("silver.transactions@") for row in refine_rows for t in row["tables"])


def test_the_audit_log_refuses_to_change_what_it_recorded(spark, demo_lake):
    ref = demo_lake.cfg.table("meta.audit_log")
    before = current_version(spark, ref)
    with pytest.raises(Exception, match="(?i)append.?only"):
        DeltaTable.forPath(spark, ref.path).delete("actor = 'analyst'")
    assert current_version(spark, ref) == before


def _pads(key: bytes) -> list[str]:
    """What the old SQL HMAC put in plans: the key's inner and outer pads, in hex."""
    key = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return [bytes(b ^ x for b in key).hex() for x in (0x36, 0x5C)]


def test_the_pii_key_is_in_no_plan_log_process_list_or_mlflow_param(spark, demo_lake):
    cfg = demo_lake.cfg
    key = pii_key(cfg).decode()
    secrets = [key, *_pads(key.encode())]
    bronze = read_table(spark, cfg.table("bronze.transactions_raw")).limit(10)
    valid, _ = refine(bronze, TRANSACTION_RULES, lambda c: pii_token(c, cfg))
    plans = valid._jdf.queryExecution().toString()  # parsed, analyzed, optimized and physical, as EXPLAIN EXTENDED
    assert "tidewater_pii_token" in plans and "TIDEWATER_PII_KEY" in plans
    found = [s for s in secrets if s.lower() in plans.lower()]
    assert not found, "the key or its pads are in the query plan"
    for log in [p for p in demo_lake.root.rglob("*") if p.is_file() and (p.suffix in (".log", ".out", ".err")
                                                                        or p.parent.name == "logs")]:
        text = log.read_text(errors="replace")
        assert not [s for s in secrets if s in text], f"the key is in {log}"
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        assert key not in line, f"the key is on the command line of pid {proc.pid}"
    from registry.client import registry_client

    client = registry_client(cfg)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs
    assert not [(r.info.run_id, k) for r in runs for k, v in r.data.params.items() if key in str(v)]


def test_horovodrun_workers_get_no_secret_from_the_environment(monkeypatch):
    for name in ("TIDEWATER_PII_KEY", "TIDEWATER_API_TOKENS", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "not-for-a-command-line-0123456789")
    env = worker_environment()
    assert "not-for-a-command-line-0123456789" not in env.values()
    assert env["PATH"] == os.environ["PATH"] and env["PYTHONUNBUFFERED"] == "1"


def test_a_refine_with_another_key_stops_before_writing(lake, tmp_path):
    root = tmp_path / "lake"
    shutil.copytree(lake.root, root)
    copy = load_config("local", root=root)
    silver = {n: table_version(copy, n) for n in ("silver.customers", "silver.transactions")}
    assert table_properties(None, copy.table("silver.transactions").path)[FINGERPRINT_PROPERTY]
    env = {**os.environ, "TIDEWATER_PII_KEY": "another-key-than-the-one-that-hashed-silver"}
    done = subprocess.run([sys.executable, "-m", "lakehouse.cli", "run", "refine_silver", "--root", str(root)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_DIR)
    assert done.returncode == 2, done.stderr
    assert "was hashed with another key" in done.stderr and "hint: export the TIDEWATER_PII_KEY" in done.stderr
    assert {n: table_version(copy, n) for n in silver} == silver


def test_what_holds_pii_or_secrets_is_readable_by_its_owner_only(demo_lake):
    root = demo_lake.root
    holders = [*(root / "tables" / "bronze").rglob("*.parquet"), *(root / "tables" / "quarantine").rglob("*.parquet"),
               *root.rglob("online.db"), *root.rglob("mlflow.db")]
    assert any(p.name == "online.db" for p in holders) and any(p.name == "mlflow.db" for p in holders)
    shared = [str(p) for p in holders if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not shared, f"readable by others: {shared[:5]}"


SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "assigned secret": re.compile(r"(?i)\b(?:password|passwd|secret|api_key|token)\b\s*[:=]\s*['\"][^'\"\s$<{]{12,}['\"]"),
}


def test_the_repository_holds_no_secret():
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = Path(PROJECT_DIR, name)
        if not path.is_file() or path.suffix in (".png", ".jar", ".ipynb"):
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {kind}" for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert not found
