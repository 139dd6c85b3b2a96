"""Soak: the streaming pipeline under continuous load, with kill -9 at random points; nothing lost.

    .venv/bin/python benchmarks/soak.py --root DEMO_ROOT [--minutes 30] [--kill-every 180] [--interval 10]

DEMO_ROOT holds a demo lakehouse with a champion (the script adds data to it: pass a scratch copy).
Two real processes run the pipeline: a worker that runs ingest_bronze and refine_silver in a loop
(as the scheduler does) and `score_stream --continuous`. Load: the demo scenario's next days, cut
into small transaction files landed by the protocol every --interval seconds (labels land whole when
their day is done). Every --kill-every seconds (+-50%) one of the two, chosen at random, is killed
with SIGKILL (its whole process group, JVM included) wherever it is, and started again at once.

When the time is up the kills stop, the load goes on until the last restart has committed, then it
stops, both are stopped and one more ingest, refine and score_stream drain what is left. Then, from the Delta tables (delta-rs, no Spark):
- bronze: every landed file's lines exactly (as multisets): files that differ, rows doubled;
- silver + quarantine: every landed transaction line is in silver (its txn_id) or in quarantine (its
  line): lost lines;
- predictions: one row per (transaction, model version, route): doubled rows; silver transactions of
  the soak without a champion prediction: lost;
- restart time: from each restart to that process's next commit (silver, or gold.predictions_stream).
Printed, and written to benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.config import Config, load_config  # noqa: E402
from lakehouse.generator import continue_scenario  # noqa: E402
from lakehouse.landing import complete_file  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
TIDEWATER = str(Path(sys.executable).parent / "tidewater")
SOAK_FILE = "transactions-soak-{:05d}.jsonl"

# ingest_bronze then refine_silver, again and again, in one Spark session (argv: root, env or "").
PIPELINE_LOOP = """
import sys, time
from lakehouse.bronze import ingest_bronze
from lakehouse.config import load_config
from lakehouse.session import build_session
from lakehouse.silver import refine_silver
cfg = load_config(sys.argv[2] or None, root=sys.argv[1])
spark = build_session(cfg)
while True:
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    time.sleep(2)
"""


def last_commit(path: str) -> int:
    return max((int(p.stem) for p in Path(path, "_delta_log").glob("*.json")), default=-1)


class Worker:
    """One pipeline process: started in its own process group, killed -9 whole, restarted."""

    def __init__(self, name: str, argv: list[str], watch: str, log: Path):
        self.name, self.argv, self.watch, self.log = name, argv, watch, log
        self.proc: subprocess.Popen | None = None
        self.restarts: list[dict] = []

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill_and_restart(self) -> None:
        self.kill()
        self.restarts.append({"at": time.time(), "version": last_commit(self.watch), "first_commit_s": None})
        self.start()

    def note_commits(self) -> None:
        """Close the newest restart's clock at its first commit after the restart."""
        pending = self.restarts[-1] if self.restarts and self.restarts[-1]["first_commit_s"] is None else None
        if pending and last_commit(self.watch) > pending["version"]:
            pending["first_commit_s"] = round(time.time() - pending["at"], 1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.kill()


class Load(threading.Thread):
    """Lands the scenario's next days as small files, every `interval` seconds, by the landing protocol."""

    def __init__(self, cfg: Config, staged: Path, interval: float, lines_per_file: int):
        super().__init__(daemon=True)
        self.cfg, self.interval, self.stop_event = cfg, interval, threading.Event()
        self.days = sorted(staged.glob("batch-????-??-??"))
        self.lines_per_file = lines_per_file
        self.landed: dict[str, list[str]] = {}  # landed file -> its lines

    def run(self) -> None:
        n = 0
        for day in self.days:
            target = self.cfg.landing_dir / day.name
            target.mkdir(parents=True, exist_ok=True)
            lines = (day / "transactions.jsonl").read_text().splitlines()
            for start in range(0, len(lines), self.lines_per_file):
                if self.stop_event.wait(self.interval):
                    return
                chunk, path = lines[start:start + self.lines_per_file], target / SOAK_FILE.format(n)
                with complete_file(path) as f:
                    f.write("\n".join(chunk) + "\n")
                self.landed[str(path)] = chunk
                n += 1
            for other in day.iterdir():  # labels and dimensions of the day, once its transactions are in
                if other.name != "transactions.jsonl" and not other.name.startswith("_"):
                    with complete_file(target / other.name) as f:
                        f.write(other.read_text())
        raise SystemExit("the staged days ran out: stage more (--stage-days)")


def table_rows(cfg: Config, name: str, columns: list[str]) -> list[dict]:
    from deltalake import DeltaTable

    return DeltaTable(cfg.table(name).path).to_pyarrow_table(columns=columns).to_pylist()


def verify(cfg: Config, landed: dict[str, list[str]]) -> dict:
    """The equations, over the files the soak landed."""
    bronze = collections.defaultdict(collections.Counter)
    for r in table_rows(cfg, "bronze.transactions_raw", ["raw", "_source_file"]):
        path = r["_source_file"].removeprefix("file:")
        if path in landed:
            bronze[path][r["raw"]] += 1
    files_differ = sum(bronze[path] != collections.Counter(lines) for path, lines in landed.items())
    bronze_doubled = sum(max(n - collections.Counter(landed[p])[raw], 0) for p, c in bronze.items()
                         for raw, n in c.items())
    silver_ids = {r["txn_id"] for r in table_rows(cfg, "silver.transactions", ["txn_id"])}
    quarantined = {r["raw"] for r in table_rows(cfg, "quarantine.transactions", ["raw"])}
    events, lost_lines, soak_ids = 0, 0, set()
    for lines in landed.values():
        for line in lines:
            events += 1
            try:
                txn_id = json.loads(line).get("txn_id")
            except (ValueError, AttributeError):
                txn_id = None
            if txn_id in silver_ids:
                soak_ids.add(txn_id)
            elif line not in quarantined:
                lost_lines += 1
    predictions = [r for r in table_rows(cfg, "gold.predictions_stream", ["txn_id", "model_version", "route"])
                   if r["txn_id"] in soak_ids]
    keys = collections.Counter((r["txn_id"], r["model_version"], r["route"]) for r in predictions)
    scored = {r["txn_id"] for r in predictions if r["route"] == "champion"}
    return {"events_in": events, "files": len(landed), "bronze_files_differing": files_differ,
            "bronze_rows_doubled": bronze_doubled, "silver_transactions": len(soak_ids),
            "lines_lost": lost_lines, "prediction_rows": len(predictions),
            "predictions_doubled": sum(n - 1 for n in keys.values()),
            "transactions_not_scored": len(soak_ids - scored)}


def drain(args) -> None:
    for job in ("ingest_bronze", "refine_silver", "score_stream"):
        done = subprocess.run([TIDEWATER, "run", job, "--root", str(args.root), *(["--env", args.env] if args.env else [])],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"drain: {job} failed: {done.stderr.strip()[-1500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="a demo lakehouse with a champion (it gains data)")
    parser.add_argument("--env", default=None, help="its env (default local or $TIDEWATER_ENV)")
    parser.add_argument("--minutes", type=float, default=30, help="how long the load and the kills go on (30)")
    parser.add_argument("--kill-every", type=float, default=180, help="mean seconds between kills (180)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between landed files (10)")
    parser.add_argument("--lines-per-file", type=int, default=60, help="transaction lines per landed file (60)")
    parser.add_argument("--stage-days", type=int, default=12, help="scenario days generated for the load (12)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill schedule (1)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cfg = load_config(args.env, root=args.root)
    work = cfg.root / "soak"
    work.mkdir(exist_ok=True)
    staged = work / f"staged-{int(time.time())}"
    continue_scenario(cfg.landing_dir, staged, args.stage_days)
    env_arg = ["--env", args.env] if args.env else []
    workers = [
        Worker("pipeline", [sys.executable, "-c", PIPELINE_LOOP, str(cfg.root), args.env or ""],
               cfg.table("silver.transactions").path, work / "pipeline.log"),
        Worker("score_stream", [TIDEWATER, "run", "score_stream", "--continuous", "--root", str(cfg.root), *env_arg],
               cfg.table("gold.predictions_stream").path, work / "score_stream.log"),
    ]
    for w in workers:
        w.start()
    load = Load(cfg, staged, args.interval, args.lines_per_file)
    started = time.time()
    load.start()
    ends = started + args.minutes * 60
    next_kill = started + args.kill_every * rng.uniform(0.5, 1.5)
    kills = []
    try:
        while time.time() < ends:
            for w in workers:
                w.note_commits()
                if w.proc.poll() is not None:
                    raise SystemExit(f"{w.name} exited by itself ({w.proc.returncode}): see {w.log}")
            if time.time() >= next_kill:
                victim = rng.choice(workers)
                victim.kill_and_restart()
                kills.append({"minute": round((time.time() - started) / 60, 1), "process": victim.name})
                print(f"[{kills[-1]['minute']:5.1f} min] kill -9 {victim.name}, restarted", flush=True)
                next_kill = time.time() + args.kill_every * rng.uniform(0.5, 1.5)
            time.sleep(0.2)
        deadline = time.time() + 300  # no more kills; the load goes on until the last restarts have committed
        while time.time() < deadline and any(r["first_commit_s"] is None for w in workers for r in w.restarts):
            for w in workers:
                w.note_commits()
            time.sleep(0.2)
        load.stop_event.set()
        load.join()
    finally:
        load.stop_event.set()
        for w in workers:
            w.stop()
    drain(args)
    result = {"minutes": args.minutes, "kills": kills,
              "restarts": {w.name: [r["first_commit_s"] for r in w.restarts] for w in workers},
              **verify(cfg, load.landed)}
    print(json.dumps(result, indent=1))
    out = PROJECT / "benchmarks" / "results" / "soak.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
