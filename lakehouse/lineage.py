"""meta.lineage: which table versions each job run read and wrote, with which code version."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Iterator

from pyspark.sql import DataFrame, SparkSession

from lakehouse import lineage_graph
from lakehouse.catalog import write_catalog_script
from lakehouse.config import PROJECT_DIR, Config
from lakehouse.errors import UndeclaredTable, root_cause
from lakehouse.identity import current_user
from lakehouse.schemas import spark_schema
from lakehouse.tables import append_rows, current_version, delta_rs_writes, read_table

LINEAGE_TABLE = "meta.lineage"

@dataclass
class TableVersion:
    table: str
    version: int | None


@dataclass
class OutputVersion:
    table: str
    version_before: int | None
    version: int | None
    built_from: list[str] | None  # the inputs this output was built from (declared and read)


@dataclass
class LineageRow:
    """One job run: who ran what code, which versions it read, and per output what it wrote from them."""

    run_id: str
    job: str
    env: str | None
    code_version: str | None
    started_at: dt.datetime
    ended_at: dt.datetime
    status: str  # succeeded | failed
    error: str | None
    inputs: list[TableVersion]
    outputs: list[OutputVersion]
    metrics: dict[str, int]
    actor: str | None = None  # the identity that ran it (lakehouse.identity); None in rows from before


def code_version() -> str:
    """The git commit of the code (with -dirty for local changes), else the package version."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_DIR, capture_output=True, text=True, timeout=5).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        from lakehouse import __version__
        return f"tidewater-{__version__}"


def asset_kind(name: str) -> str:
    """`table` for a configured Delta table, else the asset's prefix (`model`, `online`, `landing`)."""
    return name.split(":", 1)[0] if ":" in name else "table"


@dataclass
class JobRun:
    """What one run read and wrote: filled in by the job through these methods, saved by `track_run`.

    Reads are pinned to the versions planned when the run started (one consistent snapshot), and
    only declared tables may be read or written: the declaration is the job's contract.
    """

    spark: SparkSession
    cfg: Config
    job: str
    declared_inputs: list[str] = field(default_factory=list)
    declared_outputs: dict[str, list[str]] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    planned: dict[str, int | None] = field(default_factory=dict)
    inputs: dict[str, int | None] = field(default_factory=dict)
    more_inputs: list[tuple[str, int]] = field(default_factory=list)  # further versions of an input, in order
    outputs: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)
    skipped: bool = False

    def current_versions(self, names) -> dict[str, int | None]:
        """The latest version of each input: Delta tables, and the scoring alias's model version."""
        from lakehouse.model_store import alias_version

        out = {}
        for name in names:
            kind = asset_kind(name)
            if kind == "table":
                out[name] = current_version(self.spark, self.cfg.table(name))
            elif kind == "model":
                out[name] = alias_version(self.cfg, self.cfg.scoring.alias)
            else:
                out[name] = None
        return out

    def _declared(self, name: str, declared, what: str) -> None:
        if name not in declared:
            raise UndeclaredTable(f"job {self.job} {what} {name}, which it does not declare",
                                  hint=f"add it to the job's {what.split()[0]} list (declared: {', '.join(declared)})")

    def version_to_read(self, name: str) -> int | None:
        self._declared(name, self.declared_inputs, "reads")
        return self.planned[name] if name in self.planned else self.current_versions([name])[name]

    def read(self, name: str) -> DataFrame:
        """Read a declared table at its planned version and record that version as an input."""
        version = self.version_to_read(name)
        self.inputs[name] = version
        return read_table(self.spark, self.cfg.table(name), version)

    def read_or_empty(self, name: str, schema) -> DataFrame:
        """Like `read`, but a table not written yet reads as no rows (labels arrive days later)."""
        if self.version_to_read(name) is None:
            self.inputs[name] = None
            return self.spark.createDataFrame([], schema)
        return self.read(name)

    def uses(self, name: str, version: int | None = None) -> int | None:
        """Record an input read by other means (Feast, a stream, the registry) at `version` or its planned one."""
        self.inputs[name] = version if version is not None else self.version_to_read(name)
        return self.inputs[name]

    def also_uses(self, name: str, version: int) -> None:
        """Record one more version of an input the run read next to the first (a canary or shadow model)."""
        self._declared(name, self.declared_inputs, "reads")
        if self.inputs.get(name) != version and (name, version) not in self.more_inputs:
            self.more_inputs.append((name, version))

    def all_inputs(self) -> list[tuple[str, int | None]]:
        """Every (input, version) the run read: the planned one per input first, then the further versions."""
        return [*self.inputs.items(), *self.more_inputs]

    def writing(self, name: str) -> None:
        """Note an output's version before the job writes it."""
        self._declared(name, self.declared_outputs, "writes")
        if name not in self.outputs:
            self.outputs[name] = (current_version(self.spark, self.cfg.table(name)), None)

    def wrote(self, name: str) -> int | None:
        """Note an output's version after the job wrote it."""
        self._declared(name, self.declared_outputs, "writes")
        ref = self.cfg.table(name)
        before = self.outputs.get(name, (None, None))[0]
        after = current_version(self.spark, ref)
        self.outputs[name] = (before, after)
        return after

    def wrote_asset(self, name: str, version: int | None, before: int | None = None) -> None:
        """Note an output outside Delta: a registered model version, the online store."""
        self._declared(name, self.declared_outputs, "writes")
        self.outputs[name] = (before, version)

    def count(self, metric: str, n: int) -> None:
        self.metrics[metric] = self.metrics.get(metric, 0) + int(n)

    def changed_outputs(self) -> dict[str, int]:
        return {t: v for t, (b, v) in self.outputs.items() if v is not None and v != b}

    def built_from(self, output: str) -> list[str]:
        """The inputs this output was built from: declared for it, and actually read by this run."""
        return [t for t in self.declared_outputs.get(output, []) if t in self.inputs]


def _save(run: JobRun, status: str, error: str | None) -> None:
    row = LineageRow(run.run_id, run.job, run.cfg.env, code_version(), run.started_at,
                     dt.datetime.now(dt.timezone.utc), status, error,
                     [TableVersion(t, v) for t, v in run.all_inputs()],
                     [OutputVersion(t, b, a, run.built_from(t)) for t, (b, a) in run.outputs.items()],
                     run.metrics, current_user())
    append_rows(run.spark, run.cfg.table(LINEAGE_TABLE), [row], spark_schema(LineageRow))
    write_catalog_script(run.cfg)


@contextlib.contextmanager
def track_run(run: JobRun) -> Iterator[JobRun]:
    """Record a lineage row for the run inside the block, failed runs included."""
    try:
        yield run
    except BaseException as err:
        _save(run, "failed", root_cause(err))
        raise
    _save(run, "succeeded", None)


def lineage_rows(spark: SparkSession, cfg: Config) -> list[dict]:
    """Every meta.lineage row as a dict (the table is small: one row per job run)."""
    ref = cfg.table(LINEAGE_TABLE)
    if current_version(spark, ref) is None:
        return []
    return [r.asDict(recursive=True) for r in read_table(spark, ref).collect()]


def last_successful_inputs(spark: SparkSession, cfg: Config, job: str) -> dict[str, int | None] | None:
    """The input versions of the job's latest successful run, or None if it never ran."""
    last = last_successful_run(spark, cfg, job)
    return None if last is None else last["inputs"]


def last_successful_run(spark: SparkSession, cfg: Config, job: str) -> dict | None:
    """The job's latest successful run: `inputs` (input -> the version it planned) and its
    `code_version`; None if it never ran."""
    ref = cfg.table(LINEAGE_TABLE)
    if not delta_rs_writes(ref.path):
        if current_version(spark, ref) is None:
            return None
        latest = (read_table(spark, ref).where(f"job = '{job}' AND status = 'succeeded'")
                  .orderBy("ended_at", ascending=False).select("inputs", "code_version").first())
    else:
        import pyarrow.compute as pc

        from lakehouse.delta_reader import read_rows

        # Read with delta-rs where it is installed: asked before every job, and a few small files are
        # no work for a JVM.
        runs = read_rows(cfg, LINEAGE_TABLE, where=lambda t: pc.and_(pc.equal(t["job"], job),
                                                                     pc.equal(t["status"], "succeeded")))
        latest = max(runs, key=lambda r: r["ended_at"]) if runs else None
    if latest is None:
        return None
    return {"inputs": _first_versions(latest["inputs"]), "code_version": latest["code_version"]}


def _first_versions(inputs: list[dict]) -> dict[str, int | None]:
    """input -> the version the run planned for it (further versions of one input come after it)."""
    out: dict[str, int | None] = {}
    for i in inputs:
        out.setdefault(i["table"], i["version"])
    return out


def producer_of(spark: SparkSession, cfg: Config, table: str, version: int) -> dict | None:
    return lineage_graph.producer_of(lineage_rows(spark, cfg), table, version)


def upstream_chain(spark: SparkSession, cfg: Config, table: str, version: int) -> dict:
    return lineage_graph.upstream_chain(lineage_rows(spark, cfg), table, version)
