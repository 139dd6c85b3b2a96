"""One SparkSession for the whole test session, and one small lakehouse built by the real jobs."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("SODA_TELEMETRY_DISABLED", "true")

from lakehouse.bronze import ingest_bronze  # noqa: E402
from lakehouse.config import Config, load_config  # noqa: E402
from lakehouse.generator import generate  # noqa: E402
from lakehouse.gold import build_gold  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from lakehouse.silver import refine_silver  # noqa: E402

SMALL = dict(seed=7, rows=3000, days=4, start_date="2026-02-01", defect_rate=0.03, fraud_rate=0.03)

# The end-to-end scenario: 30 days of warm-up history (base.yaml), then 9 days with drift planted from day 6;
# the last 2 days land as two arrivals of one day.
DEMO_ROWS, DEMO_DAYS, DRIFT_FROM_DAY = 8000, 9, 6
DEMO_ENV = {
    "generator": {"seed": 11, "fraud_rate": 0.05, "defect_rate": 0.01, "start_date": "2026-03-01",
                  "drift_from_day": DRIFT_FROM_DAY},
    "training": {"batch_size": 64, "max_epochs": 6, "patience": 6},
    "scoring": {"stream_max_files_per_trigger": 1},
    "pipeline": {"arrivals": [1, 1]},
    "deployment": {"strategy": "shadow", "review": {"min_rows": 100, "min_fraud": 5, "min_labelled_alerts": 10}},
}


def pytest_collection_modifyitems(config, items):
    """Tests marked `late` change the shared demo lakehouse (new arrivals, aliases): they run last, and
    those marked `erases` (which vacuum its tables' old files) after every other."""
    items.sort(key=lambda item: (item.get_closest_marker("late") is not None,
                                 item.get_closest_marker("erases") is not None))


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    cfg = load_config("local", root=tmp_path_factory.mktemp("session-root"))
    session = build_session(cfg)
    yield session
    session.stop()


def conf_env(tmp: Path, name: str, overrides: dict) -> Path:
    """A copy of conf/ with one more env: local.yaml with `overrides` merged in."""
    import shutil

    import yaml

    from lakehouse.config import DEFAULT_CONF_DIR, _deep_merge

    conf = tmp / "conf"
    if not conf.exists():
        shutil.copytree(DEFAULT_CONF_DIR, conf)
    local = yaml.safe_load((conf / "local.yaml").read_text())
    (conf / f"{name}.yaml").write_text(yaml.safe_dump(_deep_merge(local, {**overrides, "env": name})))
    return conf


@dataclass
class Scenario:
    cfg: Config
    conf_dir: Path
    env: str
    root: Path
    inventory: list
    output: str
    finished_at: "dt.datetime"  # UTC, naive like Spark's timestamps: what the demo itself wrote ends here


@pytest.fixture(scope="session")
def demo_lake(spark, tmp_path_factory) -> Scenario:
    """Given the demo run end to end (ingest .. train, score; new arrival: stream, drift) on 8,000 rows."""
    import contextlib
    import io

    from lakehouse.demo import run_demo

    root = tmp_path_factory.mktemp("demo")
    conf = conf_env(root, "demotest", DEMO_ENV)
    os.environ["TIDEWATER_CONF_DIR"] = str(conf)  # the demo's jobs (and their hand-overs) read this env
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            inventory = run_demo(env="demotest", root=str(root), rows=DEMO_ROWS, days=DEMO_DAYS)
    finally:
        del os.environ["TIDEWATER_CONF_DIR"]
    print(out.getvalue())
    cfg = load_config("demotest", root=root, conf_dir=conf)
    finished = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return Scenario(cfg, conf, "demotest", root, inventory, out.getvalue(), finished)


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


def tidewater_in_process(args: list[str], env: dict[str, str] | None = None) -> CommandResult:
    """`tidewater ARGS` through its command group in this process (this session's Spark), with these
    environment variables: exit status and output as a user sees them, without a JVM start per command."""
    from click.testing import CliRunner

    from lakehouse.cli import prepared

    result = CliRunner(env=env).invoke(prepared(), args, prog_name="tidewater")
    return CommandResult(result.exit_code, result.stdout, result.stderr)


@dataclass
class Lakehouse:
    cfg: Config
    manifest: dict
    root: Path


def same_rows(a, b) -> bool:
    """The two DataFrames hold the same rows, duplicates counted."""
    return a.count() == b.count() and a.exceptAll(b).isEmpty() and b.exceptAll(a).isEmpty()


def run_pipeline(spark, cfg: Config) -> None:
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    build_gold(spark, cfg)


@pytest.fixture(scope="session")
def lake(spark, tmp_path_factory) -> Lakehouse:
    """Given generated data with planted defects, when bronze -> silver -> gold ran once."""
    root = tmp_path_factory.mktemp("lakehouse")
    cfg = load_config("local", root=root)
    # Four days of history and no warm-up: its feature tests take every row, mature or not.
    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"mature_after_days": 0})})
    generate(cfg.landing_dir, **SMALL)
    run_pipeline(spark, cfg)
    manifest = json.loads((cfg.landing_dir / "_manifest.json").read_text())
    return Lakehouse(cfg=cfg, manifest=manifest, root=root)
