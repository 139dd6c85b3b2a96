"""Landing drills: a file being copied, a copy that broke the protocol, an old backfill. Nothing is lost.

The writer is a real second process that holds the file open between its two halves, as a slow copy does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.bronze import CHANGED, batch_of, ingest_bronze
from lakehouse.config import load_config
from lakehouse.generator import generate
from lakehouse.landing import part_path
from lakehouse.silver import refine_silver
from lakehouse.tables import current_version, read_table
from quality.replay import replay_quarantine

# Writes argv[3] lines of argv[2] to argv[1] (or its hidden part name with --part), says "half", waits for a
# line on stdin, writes the rest, closes (renaming a part file into place), says "done".
SLOW_COPY = """
import os, sys
target, source, half, part = sys.argv[1], sys.argv[2], int(sys.argv[3]), "--part" in sys.argv
lines = open(source).read().splitlines(keepends=True)
tmp = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".part") if part else target
f = open(tmp, "w")
f.writelines(lines[:half]); f.flush(); print("half", flush=True)
sys.stdin.readline()
f.writelines(lines[half:]); f.close()
if part:
    os.replace(tmp, target)
print("done", flush=True)
"""


class SlowCopy:
    """A second process copying one day's transactions file from `later` into landing, in two halves."""

    def __init__(self, cfg, later: Path, day: str, half: int, part: bool):
        source = later / f"batch-{day}" / "transactions.jsonl"
        self.target = target = cfg.landing_dir / f"batch-{day}" / "transactions.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", SLOW_COPY, str(target), str(source), str(half),
                                      *(["--part"] if part else [])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "half"

    def finish(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"
        self.proc.wait(timeout=30)


def from_file(path: Path):
    return F.col("_source_file").endswith(f"/{path.parent.name}/{path.name}")


def bronze_lines(spark, cfg, path: Path) -> list[str]:
    rows = read_table(spark, cfg.table("bronze.transactions_raw")).where(from_file(path))
    return sorted(r["raw"] for r in rows.select("raw").collect())


def quarantined_lines(spark, cfg, path: Path) -> list[str]:
    if current_version(spark, cfg.table("quarantine.transactions")) is None:
        return []
    rows = read_table(spark, cfg.table("quarantine.transactions")).where(from_file(path) & (F.col("reason") == CHANGED))
    return sorted(r["raw"] for r in rows.select("raw").collect())


def final_lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


@pytest.fixture
def landed(spark, tmp_path):
    """Given a lakehouse that ingested two days, and the next three days of its scenario generated aside."""
    cfg = load_config("local", root=tmp_path / "lake")
    generate(cfg.landing_dir, seed=5, rows=400, days=2, start_date="2026-08-01", defect_rate=0.0)
    ingest_bronze(spark, cfg)
    later = tmp_path / "later"
    generate(later, seed=5, rows=1000, days=5, first_day=2, start_date="2026-08-01", defect_rate=0.0)
    return cfg, later


@pytest.mark.slow
def test_a_file_copied_by_the_protocol_is_ingested_whole_only_once_it_is_in_place(spark, landed):
    cfg, later = landed
    # Given a copy under the hidden part name, half done, when ingest runs, then none of it is read
    copy = SlowCopy(cfg, later, "2026-08-03", half=50, part=True)
    target = copy.target
    assert part_path(target).exists() and not target.exists()
    ingest_bronze(spark, cfg)
    assert bronze_lines(spark, cfg, target) == []
    # When the copy completes (renamed into place) and ingest runs, then bronze holds exactly its final lines
    copy.finish()
    ingest_bronze(spark, cfg)
    assert bronze_lines(spark, cfg, target) == final_lines(target) and len(final_lines(target)) > 50
    assert quarantined_lines(spark, cfg, target) == []


@pytest.mark.slow
def test_a_file_that_grew_after_ingest_is_quarantined_whole_once_and_replays_with_nothing_lost(spark, landed):
    cfg, later = landed
    # Given a copy straight to the final name (against the protocol), paused half way, ingested as it stood
    copy = SlowCopy(cfg, later, "2026-08-04", half=60, part=False)
    target = copy.target
    ingest_bronze(spark, cfg)
    prefix = bronze_lines(spark, cfg, target)
    assert len(prefix) == 60
    # When the copy finishes and ingest runs again
    copy.finish()
    run = ingest_bronze(spark, cfg)
    # Then bronze still holds what it read, and the whole final file is quarantined with the reason
    assert bronze_lines(spark, cfg, target) == prefix
    assert quarantined_lines(spark, cfg, target) == final_lines(target)
    assert run.metrics["transactions_changed_files"] == 1
    # and a further run quarantines nothing again
    again = ingest_bronze(spark, cfg)
    assert again.metrics["transactions_changed_files"] == 0
    assert quarantined_lines(spark, cfg, target) == final_lines(target)
    # When refine runs and the quarantined file is replayed, then every final line's transaction is in silver once
    refine_silver(spark, cfg)
    replay_quarantine(spark, cfg, table="silver.transactions", reason=CHANGED)
    ids = {json.loads(line)["txn_id"] for line in final_lines(target)}
    silver = read_table(spark, cfg.table("silver.transactions")).where(F.col("txn_id").isin(list(ids)))
    assert silver.count() == silver.select("txn_id").distinct().count() == len(ids)


@pytest.mark.slow
def test_a_backfill_older_than_a_week_is_not_skipped(spark, landed):
    cfg, later = landed
    # Given a backfill folder whose files keep times 30 days older than anything landed so far
    backfill = cfg.landing_dir / "batch-2026-08-05"
    shutil.copytree(later / "batch-2026-08-05", backfill)
    old = time.time() - 30 * 86400
    for f in backfill.iterdir():
        os.utime(f, (old, old))
    # When ingest runs, then its rows are in bronze
    ingest_bronze(spark, cfg)
    target = backfill / "transactions.jsonl"
    assert bronze_lines(spark, cfg, target) == final_lines(target) != []


def test_the_batch_of_a_landing_file_is_its_batch_folder_or_empty(spark):
    paths = {"file:///lake/landing/batch-2026-01-05/transactions.jsonl": "batch-2026-01-05",
             "file:///lake/landing/batch-backfill/labels.jsonl": "batch-backfill",
             "file:///lake/landing/batch-2026-01-05/nested/transactions.jsonl": "",
             "file:///lake/landing/batch-/transactions.jsonl": "",
             "file:///lake/landing/transactions.jsonl": "",
             "file:///batch-a/b/c.jsonl": ""}
    rows = spark.createDataFrame([(p,) for p in paths], "path string").select("path", batch_of(F.col("path")).alias("batch"))
    assert {r["path"]: r["batch"] for r in rows.collect()} == paths
