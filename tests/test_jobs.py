"""The job framework: every job is a declaration, and lineage tells the story the declarations tell."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakehouse.config import load_config
from lakehouse.errors import UndeclaredTable
from lakehouse.job_runner import installed_jobs, job
from lakehouse.lineage import asset_kind, lineage_rows
from lakehouse.lineage_graph import upstream_chain
from lakehouse.tables import current_version, read_table

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def specs(cfg):
    return {name: ep.load() for name, ep in installed_jobs().items()}


def test_every_job_has_a_spark_submit_entry_point_naming_it():
    for name in installed_jobs():
        path = PROJECT / "jobs" / f"{name}.py"
        assert path.is_file(), f"jobs/{name}.py is missing"
        assert f'main("{name}", sys.argv[1:])' in path.read_text(), path


def test_jobs_command_lists_every_job_with_its_declared_tables():
    result = subprocess.run([str(BIN / "tidewater"), "jobs", "--format", "json"], capture_output=True, text=True,
                            cwd=PROJECT, timeout=120)
    assert result.returncode == 0, result.stderr
    listed = {j["job"]: j for j in json.loads(result.stdout)}
    cfg = load_config("local")
    assert set(listed) == set(installed_jobs())
    for name, spec in specs(cfg).items():
        assert listed[name]["inputs"] == spec.input_tables(cfg)
        assert listed[name]["outputs"] == spec.output_tables(cfg)
        assert listed[name]["outputs"], f"{name} declares no output"
        for out, built_from in listed[name]["outputs"].items():
            assert set(built_from) <= set(listed[name]["inputs"]), (name, out)
    assert listed["build_gold"]["outputs"]["gold.fraud_kpis"] == ["silver.transactions", "silver.labels"]
    assert listed["refine_silver"]["outputs"]["silver.labels"] == ["bronze.labels_raw"]


def test_a_job_may_read_and_write_only_what_it_declares(spark, lake):
    @job(name="reads_too_much", summary="reads a table it does not declare", inputs=("silver.labels",),
         outputs={"gold.fraud_kpis": ("silver.labels",)}, skip_unchanged=False)
    def reads_too_much(run, args):
        run.read("silver.transactions")

    @job(name="writes_too_much", summary="writes a table it does not declare", inputs=("silver.labels",),
         outputs={"gold.fraud_kpis": ("silver.labels",)}, skip_unchanged=False)
    def writes_too_much(run, args):
        run.writing("gold.merchant_daily")

    before = current_version(spark, lake.cfg.table("meta.lineage"))
    for undeclared in (reads_too_much, writes_too_much):
        with pytest.raises(UndeclaredTable, match="which it does not declare"):
            undeclared(spark, lake.cfg)
    failed = read_table(spark, lake.cfg.table("meta.lineage"), None).where(F.col("job").isin(
        "reads_too_much", "writes_too_much")).collect()
    assert current_version(spark, lake.cfg.table("meta.lineage")) == before + 2
    assert {r["status"] for r in failed} == {"failed"} and all("UndeclaredTable" in r["error"] for r in failed)


def test_the_runner_skips_a_job_whose_inputs_did_not_change_unless_forced(spark, lake):
    from lakehouse.gold import build_gold

    cfg = lake.cfg
    version = current_version(spark, cfg.table("gold.fraud_kpis"))
    skipped = build_gold(spark, cfg)
    assert skipped.skipped and current_version(spark, cfg.table("gold.fraud_kpis")) == version
    forced = build_gold(spark, cfg, force=True)
    assert not forced.skipped and forced.changed_outputs()["gold.fraud_kpis"] == version + 1


def test_lineage_records_per_output_only_the_inputs_it_was_built_from(spark, lake):
    rows = lineage_rows(spark, lake.cfg)
    refine = next(r for r in rows if r["job"] == "refine_silver" and r["status"] == "succeeded")
    built_from = {o["table"]: o["built_from"] for o in refine["outputs"]}
    assert built_from["silver.labels"] == ["bronze.labels_raw"]
    assert built_from["silver.transactions"] == ["bronze.transactions_raw"]
    labels = current_version(spark, lake.cfg.table("silver.labels"))
    chain = upstream_chain(rows, "silver.labels", labels)
    assert [n["table"] for n in chain["inputs"]] == ["bronze.labels_raw"]


def test_a_run_that_read_two_versions_of_an_input_records_both_and_still_skips_on_the_first(spark, lake):
    from lakehouse.lineage import last_successful_inputs

    @job(name="reads_two_versions", summary="reads silver.labels now and as first written",
         inputs=("silver.labels",), outputs={})
    def reads_two_versions(run, args):
        run.read("silver.labels")
        run.also_uses("silver.labels", 0)
        run.also_uses("silver.labels", 0)  # recorded once

    latest = current_version(spark, lake.cfg.table("silver.labels"))
    assert latest > 0
    # Given a run that read the latest version and version 0 of one input
    assert not reads_two_versions(spark, lake.cfg).skipped
    row = max((r for r in lineage_rows(spark, lake.cfg) if r["job"] == "reads_two_versions"), key=lambda r: r["ended_at"])
    # Then lineage lists both, the planned one first, and the skip rule compares the planned one
    assert [(i["table"], i["version"]) for i in row["inputs"]] == [("silver.labels", latest), ("silver.labels", 0)]
    assert last_successful_inputs(spark, lake.cfg, "reads_two_versions") == {"silver.labels": latest}
    assert reads_two_versions(spark, lake.cfg).skipped


def _commits(spark, path: str) -> list[tuple[int, dt.datetime]]:
    history = DeltaTable.forPath(spark, path).history().select("version", "timestamp").collect()
    return [(r["version"], r["timestamp"]) for r in history]


@pytest.mark.slow
def test_every_job_of_the_demo_read_and_wrote_exactly_what_it_declares(spark, demo_lake):
    """Declarations against the record: lineage rows, and Delta's own commit log for the writes."""
    cfg = demo_lake.cfg
    declared = specs(cfg)
    rows = [r for r in lineage_rows(spark, cfg) if r["status"] == "succeeded" and r["ended_at"] <= demo_lake.finished_at]
    read, wrote = {}, {}
    for r in rows:
        spec = declared[r["job"]]
        inputs, outputs = spec.input_tables(cfg), spec.output_tables(cfg)
        for i in r["inputs"]:
            assert i["table"] in inputs, (r["job"], i["table"])
            read.setdefault(r["job"], set()).add(i["table"])
        for o in r["outputs"]:
            assert o["table"] in outputs, (r["job"], o["table"])
            assert set(o["built_from"]) <= set(outputs[o["table"]]), (r["job"], o)
            wrote.setdefault(r["job"], set()).add(o["table"])
    # Over the demo every job read every input it declares that existed then (labels and predictions
    # do; gold.decisions_online only once the scoring API has answered, which the demo does not run) ...
    def existed(table: str) -> bool:
        if asset_kind(table) != "table":
            return True
        ref = cfg.table(table)
        return current_version(spark, ref) is not None and min(t for _, t in _commits(spark, ref.path)) <= demo_lake.finished_at

    for name in read:
        assert read[name] == {t for t in declared[name].input_tables(cfg) if existed(t)}, name
    # ... and every commit of every table fell inside a run of a job that declares it as an output.
    runs = [(r["started_at"], r["ended_at"], r["job"]) for r in rows]
    for name in cfg.table_names():
        ref = cfg.table(name)
        if name in ("meta.lineage", "meta.audit_log") or current_version(spark, ref) is None:  # the runner's records
            continue
        for version, when in _commits(spark, ref.path):
            if when > demo_lake.finished_at:  # later tests change the demo root on purpose
                continue
            writers = {j for start, end, j in runs if start <= when <= end}
            assert writers and all(name in declared[j].output_tables(cfg) for j in writers), (name, version, writers)
