"""Where quality gates plug into the jobs, without the floor importing the quality package.

A gate is found through the `tidewater.gates` entry-point group (setup.py). Jobs call
`gate.check(...)` on the rows they are about to write (it may raise to stop the job, nothing
written), write what passed plus the quarantined rows, then `gate.record(...)` with the version
they produced, so every result names the table version it describes. Before caching a batch they
ask `gate.may_quarantine(...)` which rows the gate may still refuse: those, and rows already
refused, keep their raw payload. Tables the gate `checks(...)` are written one at a time; the
others may be written side by side (a check engine may hold process-wide state while it runs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config


@dataclass
class GateVerdict:
    passed: DataFrame
    quarantined: DataFrame | None  # QUARANTINE_COLUMNS, reason = the check's name
    results: list[Any] = field(default_factory=list)  # opaque to the jobs; handed back to record()


@dataclass
class SchemaScreen:
    passed: DataFrame  # classified rows (lakehouse.refine.classify) of files whose shape the policy lets through
    quarantined: DataFrame | None  # QUARANTINE_COLUMNS rows of files quarantined for their shape
    new_fields: tuple[str, ...] = ()  # fields to add to the table (policy `evolve`)
    results: list[Any] = field(default_factory=list)


class QualityGate(Protocol):
    def prepare(self) -> None: ...

    def screen_schema(self, spark: SparkSession, cfg: Config, table: str, batch: DataFrame, *,
                      fields: tuple[str, ...], types: dict[str, str], job: str, run_id: str,
                      batch_id: str, payload: DataFrame | None = None) -> SchemaScreen: ...

    def may_quarantine(self, cfg: Config, table: str, columns: list[str]) -> Column: ...

    def checks(self, cfg: Config, table: str) -> bool: ...

    def check(self, spark: SparkSession, cfg: Config, table: str, df: DataFrame, *, job: str,
              run_id: str, batch: str, prior_rejections: dict[str, int] | None = None) -> GateVerdict: ...

    def record(self, spark: SparkSession, cfg: Config, verdict: GateVerdict,
               table_version: int | None) -> None: ...


class _NoGate:
    """Without an installed gate, everything passes and nothing is recorded."""

    def prepare(self) -> None:
        return None

    def screen_schema(self, spark, cfg, table, batch, **_: Any) -> SchemaScreen:
        return SchemaScreen(passed=batch, quarantined=None)

    def may_quarantine(self, cfg, table, columns) -> Column:
        return F.lit(False)

    def checks(self, cfg, table) -> bool:
        return False

    def check(self, spark, cfg, table, df, **_: Any) -> GateVerdict:
        return GateVerdict(passed=df, quarantined=None)

    def record(self, *_: Any, **__: Any) -> None:
        return None


def prepare_quality_gate() -> None:
    """Prepare the gate in a thread while the job starts Spark work: importing Great Expectations and
    Soda takes seconds of Python that would otherwise come before the first check."""
    threading.Thread(target=lambda: quality_gate().prepare(), name="prepare-quality-gate", daemon=True).start()


_LOADING = threading.Lock()


def quality_gate() -> QualityGate:
    with _LOADING:  # one gate, however many threads ask while it loads
        return _load_gate()


@lru_cache(maxsize=1)
def _load_gate() -> QualityGate:
    found = list(entry_points(group="tidewater.gates"))
    return found[0].load()() if found else _NoGate()
