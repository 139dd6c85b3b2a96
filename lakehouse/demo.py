"""`tidewater demo`: generate the fraud scenario and run every installed stage, with progress."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from importlib.metadata import entry_points

from pyspark.sql import functions as F

from lakehouse.config import load_config
from lakehouse.errors import ConfigError
from lakehouse.generator import expected_labels, generate
from lakehouse.kafka_topic import publish_batches
from lakehouse.console import progress
from lakehouse.job_runner import find_job, installed_jobs
from lakehouse.session import build_session
from lakehouse.tables import current_version, read_table
from lakehouse.delta_reader import table_inventory


MIN_STEPS_PER_WORKER = 4  # training steps per worker per epoch, at the least
MIN_FRAUD_LABELS = 20


def trainable(cfg, rows: int, days: int) -> bool:
    """Would the first pass (before the held-back arrivals) leave enough labels to train on?"""
    first = days - sum(cfg.pipeline.arrivals)
    if first < 1:
        return False
    labels, fraud = expected_labels(rows, days, first, cfg.generator.fraud_rate)
    tc = cfg.training
    train_share = 1 - tc.validation_share - tc.holdout_share
    return labels * train_share >= MIN_STEPS_PER_WORKER * tc.num_proc * tc.batch_size and fraud >= MIN_FRAUD_LABELS


def check_size(cfg, rows: int, days: int) -> None:
    """Stop before generating anything when the demo could not train, and say what size would."""
    if cfg.training is None or "train" not in cfg.pipeline.stages:
        return
    if cfg.generator.warmup_days < cfg.features.maturity_days:
        raise ConfigError(f"generator.warmup_days is {cfg.generator.warmup_days}, but features need "
                          f"{cfg.features.maturity_days} day(s) of history before a row is mature",
                          hint=f"set generator.warmup_days to at least {cfg.features.maturity_days}, or "
                               "features.mature_after_days to at most generator.warmup_days")
    if trainable(cfg, rows, days):
        return
    more_days = next((d for d in range(days + 1, 366) if trainable(cfg, rows * d // days, d)), None)
    more_rows = next((r for r in (rows * 2 ** k for k in range(1, 12)) if trainable(cfg, r, days)), None)
    options = [f"--rows {rows * more_days // days} --days {more_days}" if more_days else None,
               f"--rows {more_rows} --days {days}" if more_rows else None]
    raise ConfigError(f"--rows {rows} --days {days} is too small to train: the first pass "
                      f"({days - sum(cfg.pipeline.arrivals)} day(s) before {sum(cfg.pipeline.arrivals)} held-back "
                      f"days) would leave too few labelled transactions for {cfg.training.num_proc} worker(s) at "
                      f"batch size {cfg.training.batch_size}",
                      hint="the smallest that works: " + (" or ".join(o for o in options if o) or "more data"))


def _ensure_landing(cfg, rows: int | None, days: int | None) -> None:
    settings = cfg.generator.model_copy(update={k: v for k, v in {"rows": rows, "days": days}.items()
                                                if v is not None}).model_dump()
    check_size(cfg, settings["rows"], settings["days"])
    manifest = cfg.landing_dir / "_manifest.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if any(old.get(k) != v for k, v in settings.items()):
            raise ConfigError(f"{cfg.landing_dir} already holds data generated with other settings",
                              hint="pass a fresh --root for a different --rows/--days")
        progress(f"demo: landing data already generated in {cfg.landing_dir}")
        return
    progress(f"demo: generating {settings['rows']} transactions over {settings['days']} days")
    generate(cfg.landing_dir, progress=progress, **settings)
    hold_back(cfg)


def arrivals_dir(cfg) -> Path:
    return cfg.root / "arrivals"


def hold_back(cfg) -> None:
    """Move the last sum(pipeline.arrivals) batches aside: the demo lands them later, as new data."""
    batches = sorted(p for p in cfg.landing_dir.glob("batch-*") if p.is_dir())
    days = sum(cfg.pipeline.arrivals)
    if not days or days >= len(batches):
        return
    arrivals_dir(cfg).mkdir(parents=True, exist_ok=True)
    held = batches[len(batches) - days:]
    for batch in held:
        shutil.move(str(batch), arrivals_dir(cfg) / batch.name)
    progress(f"demo: holding back {held[0].name} .. {held[-1].name} as {len(cfg.pipeline.arrivals)} new arrival(s)")


def land_arrival(cfg, days: int) -> list[str]:
    """Land the next `days` held-back batches in the landing folder (as a source system would), and
    publish what the env reads from Kafka."""
    held = sorted(p for p in arrivals_dir(cfg).glob("batch-*") if p.is_dir()) if arrivals_dir(cfg).exists() else []
    for batch in held[:days]:
        shutil.move(str(batch), cfg.landing_dir / batch.name)
    publish_batches(cfg, [cfg.landing_dir / b.name for b in held[:days]], progress)
    return [b.name for b in held[:days]]


def run_demo(env: str | None = None, root: str | None = None, rows: int | None = None,
             days: int | None = None) -> list[dict]:
    started = time.time()
    cfg = load_config(env, root)
    progress(f"demo: storage root {cfg.root} (env {cfg.env})")
    _ensure_landing(cfg, rows, days)
    publish_batches(cfg, sorted(p for p in cfg.landing_dir.glob("batch-*") if p.is_dir()), progress)
    spark = build_session(cfg)
    installed = installed_jobs()
    stages = [s for s in cfg.pipeline.stages if s in installed]
    run_ids = _run_stages(spark, cfg, stages, env, root, "stage")
    arrival = [s for s in cfg.pipeline.arrival_stages if s in installed]
    for n, days in enumerate(cfg.pipeline.arrivals, 1):
        landed = land_arrival(cfg, days)
        if landed:
            progress(f"demo: arrival {n} landed: {', '.join(landed)}")
            run_ids += _run_stages(spark, cfg, arrival, env, root, f"arrival {n} stage")
    inventory = table_inventory(cfg)
    _print_summary(spark, cfg, inventory, time.time() - started)
    _print_quality(spark, cfg, run_ids)
    for report in entry_points(group="tidewater.demo_reports"):  # lines other packages contribute
        for line in report.load()(spark, cfg):
            print(line)
    return inventory


def _run_stages(spark, cfg, stages: list[str], env, root, label: str) -> list[str]:
    run_ids = []
    for i, stage in enumerate(stages, 1):
        progress(f"demo: {label} {i}/{len(stages)}: {stage}")
        run_ids.append(find_job(stage)(spark, cfg, env=env, root=root).run_id)
    return run_ids


def quality_summary(spark, cfg, run_ids: list[str]) -> dict[str, int]:
    """Checks run by these runs, by outcome (from gold.quality_results, written by the gates)."""
    ref = cfg.table("gold.quality_results")
    if current_version(spark, ref) is None:
        return {}
    rows = (read_table(spark, ref).where(F.col("run_id").isin(run_ids)).groupBy("status").count().collect())
    counts = {r["status"]: r["count"] for r in rows}
    return {"checks run": sum(counts.values()),
            **{s: counts.get(s, 0) for s in ("passed", "warned", "quarantined", "failed")}}


def _print_quality(spark, cfg, run_ids: list[str]) -> None:
    summary = quality_summary(spark, cfg, run_ids)
    if summary:
        print("Quality: " + ", ".join(f"{k} {v}" for k, v in summary.items())
              + "  (details: tidewater sql \"SELECT * FROM gold.quality_results\")")


def _print_summary(spark, cfg, inventory: list[dict], seconds: float) -> None:
    print(f"\nTidewater demo finished in {seconds:.0f}s. Tables under {cfg.root}/tables:")
    width = max(len(t["name"]) for t in inventory) if inventory else 10
    for t in inventory:
        print(f"  {t['name']:<{width}}  v{t['version']:<3} {t['rows']:>9} rows")
    if "quarantine.transactions" in {t["name"] for t in inventory}:
        reasons = (read_table(spark, cfg.table("quarantine.transactions")).groupBy("reason").count()
                   .orderBy("reason").collect())
        print("Quarantined transactions by reason: "
              + ", ".join(f"{r['reason']}={r['count']}" for r in reasons))
    root = f" --root {cfg.root}"
    print("Next:")
    print(f"  tidewater tables{root}")
    print(f"  tidewater sql{root} \"SELECT * FROM gold.fraud_kpis ORDER BY event_date\"")
    print(f"  tidewater sql{root} \"SELECT count(*) FROM silver.transactions VERSION AS OF 1\"")
    print(f"  tidewater lineage{root} gold.fraud_kpis")
    print(f"  tidewater jobs{root}")
    predictions = cfg.table("gold.predictions")
    if current_version(spark, predictions) is not None:
        txn = read_table(spark, predictions).select("txn_id").first()
        if txn is not None:
            print(f"  tidewater lineage{root} --txn {txn['txn_id']}")
