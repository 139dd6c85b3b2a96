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
from lakehouse.generator import generate
from lakehouse.console import progress
from lakehouse.job_runner import find_job, installed_jobs
from lakehouse.session import build_session
from lakehouse.tables import current_version, read_table
from lakehouse.delta_reader import table_inventory


def _ensure_landing(cfg, rows: int | None, days: int | None) -> None:
    settings = cfg.generator.model_copy(update={k: v for k, v in {"rows": rows, "days": days}.items()
                                                if v is not None}).model_dump()
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
    """Move the last pipeline.hold_back_days batches aside: the demo lands them later, as new data."""
    batches = sorted(p for p in cfg.landing_dir.glob("batch-*") if p.is_dir())
    held = batches[len(batches) - cfg.pipeline.hold_back_days:] if cfg.pipeline.hold_back_days else []
    if len(held) >= len(batches):
        return
    arrivals_dir(cfg).mkdir(parents=True, exist_ok=True)
    for batch in held:
        shutil.move(str(batch), arrivals_dir(cfg) / batch.name)
    if held:
        progress(f"demo: holding back {', '.join(b.name for b in held)} as the new arrival")


def land_arrivals(cfg) -> list[str]:
    """Land the held-back batches in the landing folder (as a source system would)."""
    landed = sorted(p for p in arrivals_dir(cfg).glob("batch-*") if p.is_dir()) if arrivals_dir(cfg).exists() else []
    for batch in landed:
        shutil.move(str(batch), cfg.landing_dir / batch.name)
    return [b.name for b in landed]


def run_demo(env: str | None = None, root: str | None = None, rows: int | None = None,
             days: int | None = None) -> list[dict]:
    started = time.time()
    cfg = load_config(env, root)
    progress(f"demo: storage root {cfg.root} (env {cfg.env})")
    _ensure_landing(cfg, rows, days)
    spark = build_session(cfg)
    installed = installed_jobs()
    stages = [s for s in cfg.pipeline.stages if s in installed]
    run_ids = _run_stages(spark, cfg, stages, env, root, "stage")
    landed = land_arrivals(cfg)
    if landed:
        progress(f"demo: new arrival landed: {', '.join(landed)}")
        arrival = [s for s in cfg.pipeline.arrival_stages if s in installed]
        run_ids += _run_stages(spark, cfg, arrival, env, root, "arrival stage")
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
        reasons = (spark.table("quarantine.transactions").groupBy("reason").count()
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
