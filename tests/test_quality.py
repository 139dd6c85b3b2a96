"""Quality gates: declared checks in GE and Soda, policies, results, schema changes, replay."""

import datetime as dt
import json
import threading
import time

import pytest
from pyspark.sql import functions as F

from conftest import run_pipeline
from lakehouse.bronze import ingest_bronze
from lakehouse.config import CheckConf, load_config
from lakehouse.errors import QualityGateFailed
from lakehouse.generator import generate
from lakehouse.gold import build_gold
from lakehouse.silver import refine_silver
from lakehouse.tables import current_version, read_table
from quality.engines import run_contract, run_expectations
from quality.gates import data_time
from quality.replay import replay_quarantine, still_quarantined
from quality.validate import validate_table


def _results(spark, cfg, **where):
    df = read_table(spark, cfg.table("gold.quality_results"))
    for column, value in where.items():
        df = df.where(F.col(column) == value)
    return df


def test_ge_quarantines_rows_with_the_check_name_as_reason(spark, lake):
    cfg, defects = lake.cfg, lake.manifest["defects"]
    quarantine = read_table(spark, cfg.table("quarantine.transactions"))
    for check, defect in (("negative_amount", "negative_amount"), ("unknown_currency", "unknown_currency")):
        result = _results(spark, cfg, table="silver.transactions", check=check, job="refine_silver").first()
        assert result["engine"] == "great_expectations" and result["status"] == "quarantined"
        assert result["rows_failing"] == defects[defect]  # GE's count ...
        assert quarantine.where(F.col("reason") == check).count() == defects[defect]  # ... is what moved


def test_results_land_for_both_engines_with_versions(spark, lake):
    cfg = lake.cfg
    engines = {r[0] for r in _results(spark, cfg, job="refine_silver").select("engine").distinct().collect()}
    assert {"great_expectations", "soda", "refine", "schema"} <= engines
    silver_v = current_version(spark, cfg.table("silver.transactions"))
    versions = {r[0] for r in _results(spark, cfg, table="silver.transactions", job="refine_silver")
                .select("table_version").distinct().collect()}
    assert versions == {silver_v}
    gold = _results(spark, cfg, job="build_gold", table="gold.fraud_kpis").collect()
    assert {r["check"] for r in gold} == {"fraud_rate_is_a_share", "label_coverage_is_a_share", "kpis_not_empty"}
    assert all(r["status"] == "passed" for r in gold)


def test_validate_passes_today_and_again_on_a_rerun(spark, lake):
    first = validate_table(spark, lake.cfg, "silver.transactions")
    again = validate_table(spark, lake.cfg, "silver.transactions", version=first.version)
    assert not first.failed and not again.failed
    assert [(r.check.name, r.passed, r.observed) for r in first.results] == \
           [(r.check.name, r.passed, r.observed) for r in again.results]
    recorded = _results(spark, lake.cfg, job="validate", table="silver.transactions")
    assert recorded.where(F.col("table_version") == first.version).count() == 2 * len(first.results)


def test_freshness_is_judged_at_the_end_of_the_newest_dated_arrival_batch(spark):
    # Given rows from two dated arrival folders, a backfill folder (it sorts after them) and none
    rows = spark.createDataFrame([("batch-2026-06-02",), ("batch-2026-06-03",), ("batch-backfill",), (None,)],
                                 "_batch_id string")
    # Then 'now' is midnight after the newest dated batch, and without a dated batch the clock decides
    assert data_time(rows) == dt.datetime(2026, 6, 4, tzinfo=dt.timezone.utc)
    assert data_time(rows.where("_batch_id = 'batch-backfill'")) is None
    assert data_time(rows.selectExpr("'batch-2026-13-45' AS _batch_id")) is None


def test_soda_judges_freshness_in_utc_and_leaves_the_clock_of_threads_beside_it_alone(spark, monkeypatch):
    # Given rows whose newest event is 90 minutes before the check's 'now', in a process on Tokyo time
    now = dt.datetime(2026, 6, 3, 12, 0, tzinfo=dt.timezone.utc)
    events = spark.createDataFrame([(now - dt.timedelta(hours=h),) for h in (1.5, 30)], "event_time timestamp")
    fresh = CheckConf(name="events_fresh", check="freshness", column="event_time", max=2, policy="warn")
    real, seen, done = dt.datetime, set(), threading.Event()

    def watch_the_clock():  # what a silver stream beside the check sees as `datetime`
        while not done.is_set():
            seen.add(dt.datetime)

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    watcher = threading.Thread(target=watch_the_clock)
    watcher.start()
    try:
        # When Soda checks freshness
        [result] = run_contract(spark, events, [fresh], "freshness_probe", now=now)
    finally:
        done.set()
        watcher.join()
        monkeypatch.undo()
        time.tzset()
    # Then the newest event is 1.5 hours old, as in UTC, and no thread saw a patched datetime
    assert result.passed and result.observed == "1.5 hours"
    assert seen == {real}


def test_ge_counts_a_batch_without_caching_it_again(spark):
    # Given a batch the gate has cached already, with a duplicated key and a negative amount
    batch = spark.createDataFrame([("t1", 5.0), ("t2", -1.0), ("t2", 3.0), ("t3", 7.5)],
                                  "txn_id string, amount double").persist()
    batch.count()
    checks = [CheckConf(name="negative_amount", check="between", column="amount", min=0, policy="quarantine"),
              CheckConf(name="txn_id_unique", check="unique", column="txn_id", policy="warn")]
    cached = spark.sparkContext._jsc.getPersistentRDDs().size()
    try:
        # When Great Expectations checks it
        results = run_expectations(batch.where("txn_id IS NOT NULL"), checks, "cache_probe")
        # Then it counts the failing rows, and Spark's cache holds what it held before (GE's own
        # persist would keep a copy of every batch until the driver exits)
        assert [(r.check.name, r.rows_checked, r.rows_failing) for r in results] == \
               [("negative_amount", 4, 1), ("txn_id_unique", 4, 2)]
        assert spark.sparkContext._jsc.getPersistentRDDs().size() == cached
    finally:
        batch.unpersist()


def _fresh(tmp_path, rows=500, days=2, **overrides):
    cfg = load_config("local", root=tmp_path, overrides=overrides)
    generate(cfg.landing_dir, seed=21, rows=rows, days=days, start_date="2026-06-01")
    return cfg


def test_a_fail_check_stops_refine_and_silver_gets_no_version(spark, tmp_path):
    strict = [{"name": "tiny_amounts_only", "check": "between", "column": "amount", "max": 1.0, "policy": "fail"}]
    cfg = _fresh(tmp_path, quality={"silver.transactions": {"checks": strict}})
    ingest_bronze(spark, cfg)
    with pytest.raises(QualityGateFailed, match="tiny_amounts_only") as err:
        refine_silver(spark, cfg)
    assert "silver.transactions was not written" in str(err.value)
    assert current_version(spark, cfg.table("silver.transactions")) is None
    failed = _results(spark, cfg, check="tiny_amounts_only").first()
    assert failed["status"] == "failed" and failed["rows_failing"] > 0
    lineage = read_table(spark, cfg.table("meta.lineage")).where("job = 'refine_silver'").first()
    assert lineage["status"] == "failed" and "tiny_amounts_only" in lineage["error"]


def test_a_fail_check_in_gold_leaves_every_gold_table_unchanged(spark, tmp_path):
    cfg = _fresh(tmp_path)
    run_pipeline(spark, cfg)
    before = {t: current_version(spark, cfg.table(t)) for t in ("gold.fraud_kpis", "gold.customer_daily_spend")}
    impossible = [{"name": "needs_a_million_rows", "check": "row_count", "min": 1_000_000, "policy": "fail"}]
    strict = load_config("local", root=cfg.root, overrides={"quality": {"gold.fraud_kpis": {"checks": impossible}}})
    with pytest.raises(QualityGateFailed, match="needs_a_million_rows"):
        build_gold(spark, strict, force=True)
    assert {t: current_version(spark, cfg.table(t)) for t in before} == before
    assert _results(spark, cfg, check="needs_a_million_rows", status="failed").count() == 1


def _rewrite_first_batch(cfg, change):
    """Apply `change` to every parsable record of the first transactions file: a source shape change."""
    path = sorted(cfg.landing_dir.glob("batch-*/transactions.jsonl"))[0]
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
            continue
        change(rec)
        out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n")
    return path


def test_non_finite_amounts_are_quarantined_and_an_undated_folder_does_not_wedge_later_runs(spark, tmp_path):
    # Given four transactions whose amounts Spark would cast to inf or NaN, and a backfill folder
    # next to the dated batches (it sorts after them: 'b' > '2')
    cfg = _fresh(tmp_path, rows=600, days=3)
    path = sorted(cfg.landing_dir.glob("batch-*/transactions.jsonl"))[0]
    lines = path.read_text().splitlines()
    poisoned = {}
    for i, amount in zip(range(1, 8, 2), ("Infinity", "-Infinity", "NaN", "inf")):
        rec = json.loads(lines[i])
        rec["amount"] = amount
        lines[i] = json.dumps(rec)
        poisoned[rec["txn_id"]] = amount
    path.write_text("\n".join(lines) + "\n")
    sorted(cfg.landing_dir.glob("batch-*"))[-1].rename(cfg.landing_dir / "batch-backfill")
    # When bronze and silver run, and again after one more dated batch arrives
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    first = current_version(spark, cfg.table("silver.transactions"))
    generate(cfg.landing_dir, seed=21, rows=800, days=4, first_day=3, start_date="2026-06-01")
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    # Then each poisoned amount is quarantined as invalid_type with its value, silver holds only finite amounts
    held = read_table(spark, cfg.table("quarantine.transactions")).where(
        F.get_json_object("raw", "$.txn_id").isin(list(poisoned))).collect()
    assert sorted((r["reason"], r["detail"]) for r in held) == \
        sorted(("invalid_type", f"amount is not a double: {a}") for a in poisoned.values())
    silver = read_table(spark, cfg.table("silver.transactions"))
    assert silver.where(F.col("txn_id").isin(list(poisoned))).count() == 0
    assert silver.where(F.isnan("amount") | (F.abs("amount") == float("inf"))).count() == 0
    # and both runs wrote silver: the backfill's rows under their folder's name, then the new day's
    assert current_version(spark, cfg.table("silver.transactions")) > first
    assert silver.where(F.col("_batch_id") == "batch-backfill").count() > 0
    assert silver.where(F.col("_batch_id") == "batch-2026-06-04").count() > 0


def test_an_oversized_line_is_quarantined_unparsed_and_nothing_else_is_lost(spark, tmp_path):
    # Given a transactions file with one line far longer than the source allows (a 100 KB field)
    cfg = _fresh(tmp_path, rows=300, days=2, sources={"transactions": {"max_record_chars": 20_000}})
    man = json.loads((cfg.landing_dir / "_manifest.json").read_text())
    path = sorted(cfg.landing_dir.glob("batch-*/transactions.jsonl"))[-1]
    first = json.loads(path.read_text().splitlines()[0])
    line = json.dumps(first | {"txn_id": "T_OVERSIZED", "merchant_category": "x" * 100_000})
    # and one within the limit in characters but not in bytes (15,000 two-byte characters)
    wide = json.dumps(first | {"txn_id": "T_WIDE", "merchant_category": "é" * 15_000}, ensure_ascii=False)
    path.write_text(path.read_text(encoding="utf-8") + line + "\n" + wide + "\n", encoding="utf-8")
    # When bronze and silver run
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    # Then it is quarantined as oversized, with its length, and never reaches silver
    held = read_table(spark, cfg.table("quarantine.transactions")).where(
        F.col("raw").startswith('{"txn_id": "T_OVERSIZED"')).collect()
    assert [(r["reason"], r["detail"]) for r in held] == \
        [("oversized_record", f"{len(line)} characters; a record holds at most 20000")]
    silver = read_table(spark, cfg.table("silver.transactions"))
    assert silver.where(F.col("txn_id") == "T_OVERSIZED").count() == 0
    # while the wide line, counted in characters, is refined like any other
    assert [r["merchant_category"] for r in silver.where(F.col("txn_id") == "T_WIDE").collect()] == ["é" * 15_000]
    # and every bronze row is accounted for
    bronze = read_table(spark, cfg.table("bronze.transactions_raw")).count()
    quarantined = read_table(spark, cfg.table("quarantine.transactions")).count()
    assert bronze == silver.count() + quarantined + man["expected"]["duplicate_transactions"]


@pytest.mark.parametrize("policy", ["evolve", "quarantine_batch", "fail"])
def test_a_new_source_field_follows_the_schema_policy(spark, tmp_path, policy):
    cfg = _fresh(tmp_path, quality={"silver.transactions": {"schema_policy": policy}})
    changed = _rewrite_first_batch(cfg, lambda rec: rec.update(loyalty_tier="gold"))
    ingest_bronze(spark, cfg)
    if policy == "fail":
        with pytest.raises(QualityGateFailed, match="new field loyalty_tier"):
            refine_silver(spark, cfg)
        assert current_version(spark, cfg.table("silver.transactions")) is None
        return
    refine_silver(spark, cfg)
    silver = read_table(spark, cfg.table("silver.transactions"))
    outcome = _results(spark, cfg, check="schema_change", table="silver.transactions").first()
    assert "new field loyalty_tier" in outcome["observed_value"]
    if policy == "evolve":
        assert "loyalty_tier" in silver.columns
        assert silver.where("loyalty_tier = 'gold'").count() > 0 and outcome["status"] == "warned"
    else:
        assert "loyalty_tier" not in silver.columns
        held = read_table(spark, cfg.table("quarantine.transactions")).where("reason = 'schema_change'")
        assert held.count() == len(changed.read_text().splitlines())
        assert sorted(r["raw"] for r in held.collect()) == sorted(changed.read_text().splitlines())  # as received
        assert silver.where(F.col("_batch_id") == changed.parent.name).count() == 0


def test_fixed_quarantined_rows_replay_into_silver_exactly_once(spark, tmp_path):
    cfg = _fresh(tmp_path, rows=1500, days=2)
    man = json.loads((cfg.landing_dir / "_manifest.json").read_text())
    run_pipeline(spark, cfg)
    silver_before = read_table(spark, cfg.table("silver.transactions")).count()
    bad_currency = man["defects"]["unknown_currency"]
    assert bad_currency > 0

    # Given a data steward fixes the currency code in the quarantined rows ...
    q = cfg.table("quarantine.transactions")
    spark.sql(f"""UPDATE delta.`{q.path}`
                  SET raw = regexp_replace(raw, '"currency": "[A-Z]+"', '"currency": "EUR"')
                  WHERE reason = 'unknown_currency'""")
    # ... when the rows are replayed, then they reach silver once and leave the active quarantine.
    run = replay_quarantine(spark, cfg, table="silver.transactions", reason="unknown_currency")
    assert run.metrics["transactions_replayed"] == bad_currency
    assert read_table(spark, cfg.table("silver.transactions")).count() == silver_before + bad_currency
    assert still_quarantined(spark, cfg, "transactions").where("reason = 'unknown_currency'").count() == 0

    again = replay_quarantine(spark, cfg, table="silver.transactions", reason="unknown_currency")
    assert again.metrics["transactions_replayed"] == 0
    assert read_table(spark, cfg.table("silver.transactions")).count() == silver_before + bad_currency

    # Unfixed rows replayed stay quarantined (as new rows with today's reason), nothing is lost.
    negative = still_quarantined(spark, cfg, "transactions").where("reason = 'negative_amount'").count()
    replay_quarantine(spark, cfg, table="silver.transactions", reason="negative_amount")
    assert still_quarantined(spark, cfg, "transactions").where("reason = 'negative_amount'").count() == negative
    bronze = read_table(spark, cfg.table("bronze.transactions_raw")).count()
    silver = read_table(spark, cfg.table("silver.transactions")).count()
    active = still_quarantined(spark, cfg, "transactions").count()
    assert bronze == silver + active + man["expected"]["duplicate_transactions"]


@pytest.mark.parametrize("change, expected", [
    (lambda rec: rec.pop("channel"), "missing field channel"),
    (lambda rec: rec.update(event_time=1767225600), "type of event_time changed"),
])
def test_missing_and_retyped_fields_quarantine_the_file(spark, tmp_path, change, expected):
    cfg = _fresh(tmp_path, quality={"silver.transactions": {"schema_policy": "quarantine_batch"}})
    changed = _rewrite_first_batch(cfg, change)
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    outcome = _results(spark, cfg, check="schema_change", table="silver.transactions").first()
    assert expected in outcome["observed_value"] and outcome["status"] == "quarantined"
    held = read_table(spark, cfg.table("quarantine.transactions")).where("reason = 'schema_change'")
    assert held.count() == len(changed.read_text().splitlines())
    silver = read_table(spark, cfg.table("silver.transactions"))
    assert silver.where(F.col("_batch_id") == changed.parent.name).count() == 0
    assert silver.count() > 0  # the other batch went through
