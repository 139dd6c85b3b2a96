"""One SparkSession for the whole test session, and one small lakehouse built by the real jobs."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    cfg = load_config("local", root=tmp_path_factory.mktemp("session-root"))
    session = build_session(cfg)
    yield session
    session.stop()


@dataclass
class Lakehouse:
    cfg: Config
    manifest: dict
    root: Path


def run_pipeline(spark, cfg: Config) -> None:
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    build_gold(spark, cfg)


@pytest.fixture(scope="session")
def lake(spark, tmp_path_factory) -> Lakehouse:
    """Given generated data with planted defects, when bronze -> silver -> gold ran once."""
    root = tmp_path_factory.mktemp("lakehouse")
    cfg = load_config("local", root=root)
    generate(cfg.landing_dir, **SMALL)
    build_session(cfg)  # registers this root's tables in the shared session
    run_pipeline(spark, cfg)
    manifest = json.loads((cfg.landing_dir / "_manifest.json").read_text())
    return Lakehouse(cfg=cfg, manifest=manifest, root=root)
