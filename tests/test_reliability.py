"""Reliability drills: each fault is made for real (a second writer, kill -9 at a commit, a bad file) and
"nothing lost" is an equation the test asserts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import conf_env, same_rows
from test_landing import bronze_lines, final_lines
from lakehouse.bronze import ingest_bronze
from lakehouse.config import TableRef, load_config
from lakehouse.delta_reader import delta_exists
from lakehouse.errors import AlreadyRunning
from lakehouse.generator import generate
from lakehouse.gold import build_gold, customer_daily_spend, fraud_kpis, merchant_daily
from lakehouse.refine import SILVER_LABELS_SCHEMA
from lakehouse.silver import refine_silver
from lakehouse.tables import current_version, read_table
from quality.replay import replay_quarantine

TIDEWATER = str(Path(sys.executable).parent / "tidewater")

# Applies the declarations to the Feast registry argv[2] times, as every job and the features service
# does when it starts.
APPLY_LOOP = """
import sys
from lakehouse.config import load_config
from features.store import feature_store
cfg = load_config("local", root=sys.argv[1])
for _ in range(int(sys.argv[2])):
    feature_store(cfg, apply=True)
"""


def test_a_reader_never_sees_the_feast_registry_half_written_while_another_process_applies(tmp_path):
    from feast import FeatureStore

    from features.store import feature_store, repo_config

    cfg = load_config("local", root=tmp_path)
    feature_store(cfg, apply=True)
    writer = subprocess.Popen([sys.executable, "-c", APPLY_LOOP, str(tmp_path), "400"])
    seen = []
    while writer.poll() is None:
        seen.append(len(FeatureStore(config=repo_config(cfg)).list_feature_views()))
    assert writer.returncode == 0 and len(seen) > 100
    assert set(seen) == {len(cfg.features.views)}, f"{seen.count(0)} of {len(seen)} reads found no feature view"


def kill_at_first_commit(spark, command: list[str], tables: dict[str, TableRef], env: dict[str, str]) -> str:
    """Run `command` and kill -9 its whole process group (the JVM too) the moment one of `tables` gains a
    Delta commit; returns the name of that table."""
    before = {name: current_version(spark, ref) for name, ref in tables.items()}
    proc = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            for name, ref in tables.items():
                if current_version(spark, ref) != before[name]:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return name
            time.sleep(0.002)
        raise AssertionError(f"{command} ended before any commit: {proc.stderr.read()[-2000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def txn_line(txn_id: str, amount: float, currency: str) -> str:
    return json.dumps({"txn_id": txn_id, "card_id": "K1", "customer_id": "C1", "merchant_id": "M1",
                       "merchant_category": "grocery", "amount": amount, "currency": currency, "country": "FR",
                       "channel": "pos", "device_id": "D1", "event_time": "2026-05-02T10:00:00",
                       "card_number": "4111111111111111", "customer_name": "A B", "email": "a@b.c",
                       "ip_address": "10.0.0.1"})


@pytest.mark.slow
def test_a_replay_killed_after_its_silver_commit_is_completed_by_the_rerun_with_nothing_doubled(spark, tmp_path):
    # Given 20 transactions in a currency not configured yet (quarantined) and 5 negative amounts (quarantined)
    cfg = load_config("local", root=tmp_path / "lake")
    batch = cfg.landing_dir / "batch-2026-05-02"
    batch.mkdir(parents=True)
    nok = [f"T-NOK-{i}" for i in range(20)]
    negative = [f"T-NEG-{i}" for i in range(5)]
    lines = [txn_line(t, 100.0, "NOK") for t in nok] + [txn_line(t, -5.0, "EUR") for t in negative]
    lines += [txn_line(f"T-OK-{i}", 10.0, "EUR") for i in range(30)]
    (batch / "transactions.jsonl").write_text("\n".join(lines) + "\n")
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    quarantine, silver = cfg.table("quarantine.transactions"), cfg.table("silver.transactions")
    assert read_table(spark, quarantine).count() == 25
    # When NOK is configured and a replay is killed -9 at its first commit
    conf = conf_env(tmp_path, "nok", {"currencies": {**cfg.currencies, "NOK": 11.7}})
    fixed = load_config("nok", root=cfg.root, conf_dir=conf)
    command = [TIDEWATER, "quarantine", "replay", "silver.transactions", "--env", "nok", "--root", str(cfg.root)]
    hit = kill_at_first_commit(spark, command, {"silver": silver, "quarantine": quarantine},
                               env={"TIDEWATER_CONF_DIR": str(conf)})
    # Then it died after silver took the fixed rows and before the quarantine changed
    assert hit == "silver"
    assert read_table(spark, quarantine).where("replayed_at IS NOT NULL").count() == 0
    # When the replay runs again, and once more
    replay_quarantine(spark, fixed, table="silver.transactions")
    replay_quarantine(spark, fixed, table="silver.transactions")
    # Then every fixed transaction is in silver once, each still-failing one is quarantined once, and
    # bronze = silver + quarantine still waiting
    rows = read_table(spark, silver)
    assert rows.count() == rows.select("txn_id").distinct().count() == 50
    waiting = read_table(spark, quarantine).where("replayed_at IS NULL")
    ids = [json.loads(r["raw"])["txn_id"] for r in waiting.select("raw").collect()]
    assert sorted(ids) == sorted(negative)
    assert read_table(spark, cfg.table("bronze.transactions_raw")).count() == rows.count() + waiting.count()



def gold_review_env(tmp_path: Path) -> Path:
    """An env whose gold also quarantines days a customer spent over 300 EUR (a declared review check)."""
    import yaml

    from lakehouse.config import DEFAULT_CONF_DIR

    base = yaml.safe_load((DEFAULT_CONF_DIR / "base.yaml").read_text())
    spend = base["quality"]["gold.customer_daily_spend"]["checks"]
    spend.append({"name": "large_daily_spend", "check": "between", "column": "total_amount_eur", "max": 300,
                  "policy": "quarantine"})
    return conf_env(tmp_path, "review", {"quality": {"gold.customer_daily_spend": {"checks": spend}}})


@pytest.mark.slow
def test_gold_killed_between_its_tables_is_redone_exactly_and_rebuilds_quarantine_each_row_once(spark, tmp_path):
    # Given two days refined into silver and gold built with a check that quarantines large daily spend
    conf = gold_review_env(tmp_path)
    cfg = load_config("review", root=tmp_path / "lake", conf_dir=conf)
    generate(cfg.landing_dir, seed=3, rows=600, days=4, start_date="2026-06-01", defect_rate=0.0)
    later = tmp_path / "later"
    generate(later, seed=3, rows=600, days=4, first_day=2, start_date="2026-06-01", defect_rate=0.0)
    for day in ("2026-06-03", "2026-06-04"):
        shutil.rmtree(cfg.landing_dir / f"batch-{day}")
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    build_gold(spark, cfg)
    quarantine = cfg.table("quarantine.customer_daily_spend")
    first = read_table(spark, quarantine).count()
    assert first > 0
    # When gold is rebuilt from the same silver, then no row is quarantined twice
    build_gold(spark, cfg, force=True)
    assert read_table(spark, quarantine).count() == first
    # When two more days arrive and a build is killed -9 as its first table commits, then run again
    for batch in later.glob("batch-*"):
        shutil.copytree(batch, cfg.landing_dir / batch.name)
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    tables = {name: cfg.table(name) for name in
              ("gold.customer_daily_spend", "gold.merchant_daily", "gold.fraud_kpis")}
    hit = kill_at_first_commit(spark, [TIDEWATER, "run", "build_gold", "--env", "review", "--root", str(cfg.root),
                                       "--conf-dir", str(conf)], tables, env={})
    assert hit == "gold.customer_daily_spend"
    assert current_version(spark, tables["gold.fraud_kpis"]) == 1  # the other tables still hold the last build
    build_gold(spark, cfg)
    # Then gold equals what silver gives now, and each rejected row is in quarantine once
    txns = read_table(spark, cfg.table("silver.transactions"))
    labels = (read_table(spark, cfg.table("silver.labels")) if delta_exists(cfg.table("silver.labels").path)
              else spark.createDataFrame([], SILVER_LABELS_SCHEMA))
    spend = customer_daily_spend(txns)
    assert same_rows(read_table(spark, cfg.table("gold.customer_daily_spend")),
                     spend.where("total_amount_eur <= 300"))
    assert same_rows(read_table(spark, cfg.table("gold.merchant_daily")), merchant_daily(txns, labels))
    assert same_rows(read_table(spark, cfg.table("gold.fraud_kpis")), fraud_kpis(txns, labels))
    rejected = read_table(spark, quarantine)
    assert rejected.count() == rejected.select("raw").distinct().count() > first
    held = {json.loads(r["raw"])["customer_id"] + r["raw"] for r in rejected.select("raw").collect()}
    large = spend.where("total_amount_eur > 300").select(F.to_json(F.struct(*spend.columns)).alias("raw"))
    assert {json.loads(r["raw"])["customer_id"] + r["raw"] for r in large.collect()} <= held


def lock_held(cfg, name: str) -> bool:
    import fcntl

    path = cfg.root / "_locks" / f"{name}.lock"
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def conserved(spark, cfg, entity: str) -> None:
    """bronze = silver + quarantine still waiting + duplicates, and no key twice in silver."""
    bronze = read_table(spark, cfg.table(cfg.sources[entity].bronze))
    silver = read_table(spark, cfg.table(f"silver.{entity}"))
    waiting = read_table(spark, cfg.table(f"quarantine.{entity}")).where("replayed_at IS NULL")
    assert silver.count() == silver.select("txn_id").distinct().count()
    assert waiting.count() == waiting.select("raw").distinct().count()
    kept = bronze.join(silver.select("txn_id"), F.get_json_object("raw", "$.txn_id") == F.col("txn_id"), "left_semi")
    assert bronze.select("raw").distinct().count() == kept.select("raw").distinct().count() + waiting.count()


@pytest.mark.slow
def test_a_second_refine_started_while_one_runs_stops_with_a_clear_message_and_loses_nothing(spark, tmp_path):
    # Given five days landed and ingested
    cfg = load_config("local", root=tmp_path / "lake")
    generate(cfg.landing_dir, seed=9, rows=1500, days=5, start_date="2026-07-01", defect_rate=0.05)
    ingest_bronze(spark, cfg)
    # When refine runs in another process and a second refine starts while the first holds its lock
    first = subprocess.Popen([TIDEWATER, "run", "refine_silver", "--root", str(cfg.root)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not lock_held(cfg, "refine_silver") and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.stdout.read()
    # Then the second stops at once with a one-line reason, before it reads or writes anything
    with pytest.raises(AlreadyRunning, match=r"another refine_silver run \(pid \d+\) is running"):
        refine_silver(spark, cfg)
    # and the first finishes, with every bronze row in silver, quarantine or counted as a duplicate
    assert first.wait(timeout=300) == 0, first.stdout.read()
    conserved(spark, cfg, "transactions")


def refined_but_the_last_day(spark, root: Path, aside: Path, **scenario):
    """A lakehouse at `root` that took in all of a generated scenario but its last day, which waits in
    `aside`: (config, the last day's landing folder, where it waits)."""
    cfg = load_config("local", root=root)
    generate(cfg.landing_dir, start_date="2026-07-01", **scenario)
    last_day = sorted(cfg.landing_dir.glob("batch-*"))[-1]
    waiting = shutil.move(str(last_day), aside)
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    return cfg, last_day, waiting


def data_files(table: Path) -> set[str]:
    return {p.name for p in table.glob("*.parquet")}


@pytest.mark.slow
def test_a_replay_whose_commit_is_beaten_by_refine_tries_again_and_loses_nothing(spark, tmp_path):
    # Given a lakehouse with rows that stay in quarantine, and a new day still to come
    cfg, last_day, later = refined_but_the_last_day(spark, tmp_path / "lake", tmp_path, seed=13, rows=1200,
                                                    days=3, defect_rate=0.05)
    quarantine = cfg.table("quarantine.transactions")
    # When a replay has written its MERGE's files but not committed them, and is held there (SIGSTOP)
    files, version = data_files(Path(quarantine.path)), current_version(spark, quarantine)
    replay = subprocess.Popen([TIDEWATER, "quarantine", "replay", "silver.transactions", "--root", str(cfg.root)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        while replay.poll() is None and data_files(Path(quarantine.path)) == files:
            time.sleep(0.001)
        os.killpg(replay.pid, signal.SIGSTOP)
        assert current_version(spark, quarantine) == version, "the replay committed before it was held: nothing was tested"
        # and refine commits the new day's rejects to the same table meanwhile
        shutil.move(later, last_day)
        ingest_bronze(spark, cfg)
        refine_silver(spark, cfg)
        assert current_version(spark, quarantine) == version + 1
    finally:
        os.killpg(replay.pid, signal.SIGCONT)
    output = replay.communicate(timeout=300)[0]
    # Then the replay's commit meets refine's, and it tries again on the new snapshot and succeeds
    assert replay.returncode == 0, output[-3000:]
    assert "quarantine.transactions: another writer committed first" in output
    conserved(spark, cfg, "transactions")


MERCHANT_HEADER = "merchant_id,merchant_name,category,country,updated_at"


@pytest.mark.slow
def test_csv_files_are_read_by_their_own_header_and_quoted_commas_stay_in_their_field(spark, tmp_path):
    # Given merchants files: the configured header with a quoted comma, a reordered header, a header
    # missing a column
    cfg = load_config("local", root=tmp_path / "lake")
    generate(cfg.landing_dir, seed=17, rows=200, days=1, start_date="2026-07-01", defect_rate=0.0)
    batch = cfg.landing_dir / "batch-2026-07-02"
    batch.mkdir()
    (batch / "merchants.csv").write_text(
        f"{MERCHANT_HEADER}\nM9001,\"Joe's, Inc\",grocery,FR,2026-07-02T08:00:00\n")
    (batch / "merchants-reordered.csv").write_text(
        "category,merchant_id,updated_at,country,merchant_name\n"
        "fuel,M9002,2026-07-02T08:00:00,DE,Tankstelle Nord\n"
        "travel,M9003,2026-07-02T08:00:00,ES,\"Viajes, Sol\"\n")
    (batch / "merchants-short.csv").write_text(
        "merchant_id,merchant_name,country,updated_at\nM9004,Short Ltd,IT,2026-07-02T08:00:00\n")
    # When it is ingested and refined
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    # Then each value is in its own column, whatever the file's column order
    silver = read_table(spark, cfg.table("silver.merchants")).where(F.col("merchant_id").startswith("M900"))
    got = {r["merchant_id"]: (r["merchant_name"], r["category"], r["country"]) for r in silver.collect()}
    assert got == {"M9001": ("Joe's, Inc", "grocery", "FR"), "M9002": ("Tankstelle Nord", "fuel", "DE"),
                   "M9003": ("Viajes, Sol", "travel", "ES")}
    # and the file whose header lacks a column is quarantined whole, with the header it had
    quarantine = read_table(spark, cfg.table("quarantine.merchants"))
    reasons = {r["raw"]: (r["reason"], r["detail"]) for r in quarantine.collect()}
    assert reasons["M9004,Short Ltd,IT,2026-07-02T08:00:00"] == (
        "csv_header_mismatch", "the file's header is merchant_id,merchant_name,country,updated_at; "
                               f"expected these columns: {MERCHANT_HEADER}")
    assert {raw for raw, (reason, _) in reasons.items() if reason == "csv_header"} == {
        "category,merchant_id,updated_at,country,merchant_name", "merchant_id,merchant_name,country,updated_at"}
    # and every bronze line is in silver or in quarantine
    bronze = read_table(spark, cfg.table("bronze.merchants_raw"))
    assert bronze.count() == read_table(spark, cfg.table("silver.merchants")).count() + quarantine.count()


@pytest.fixture
def small_filesystem(tmp_path):
    """A 32 MiB tmpfs of our own (root can mount one): the lakehouse lives there and can run out of space."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; deleting it frees the space again."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_ingest_on_a_full_filesystem_stops_with_one_line_and_the_rerun_after_space_is_freed_loses_nothing(
        spark, tmp_path, small_filesystem):
    # Given a lakehouse on a small filesystem that has taken in its first day
    cfg, second, held = refined_but_the_last_day(spark, small_filesystem / "lake", tmp_path, seed=21, rows=400,
                                                 days=2, defect_rate=0.02)
    bronze = cfg.table("bronze.transactions_raw")
    version = current_version(spark, bronze)
    # When the second day lands and the filesystem is full before ingest runs
    shutil.move(held, second)
    filler = fill(small_filesystem)
    done = subprocess.run([TIDEWATER, "run", "ingest_bronze", "--root", str(cfg.root)], capture_output=True, text=True)
    # Then ingest stops with one line and a hint, and bronze has no new commit
    lines = [line for line in done.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert done.returncode != 0
    assert lines[0].startswith("error: no space left on device") and lines[1].startswith("hint: free space")
    assert current_version(spark, bronze) == version
    # When space is freed and ingest and refine run again
    filler.unlink()
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    # Then bronze holds each landed line of the second day exactly once, and nothing is lost
    day = second / "transactions.jsonl"
    assert bronze_lines(spark, cfg, day) == final_lines(day)
    conserved(spark, cfg, "transactions")


def test_stream_stop_never_signals_a_process_that_only_got_a_dead_streams_pid(tmp_path):
    from lakehouse.pidfile import write_pid
    from scoring.stream import stream_dir

    cfg = load_config("local", root=tmp_path / "lake")
    pid_file = stream_dir(cfg) / "pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    # Given the pid file of a stream that died, whose pid now belongs to another score_stream process
    # (another lakehouse's stream, say: its command line says score_stream too)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "score_stream", "--continuous"])
    try:
        write_pid(pid_file, other.pid)
        record = json.loads(pid_file.read_text())
        pid_file.write_text(json.dumps({**record, "started": record["started"] - 3600}))  # the dead stream's start
        # When `tidewater stream stop` runs, then it finds no stream and the other process lives on
        done = subprocess.run([TIDEWATER, "stream", "stop", "--root", str(cfg.root)], capture_output=True, text=True)
        assert done.returncode == 0 and "score_stream is not running" in done.stdout
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
