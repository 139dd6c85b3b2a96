"""Bronze -> silver -> gold on generated data: conservation, idempotency, time travel, lineage, PII."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import run_pipeline, same_rows
from lakehouse import catalog
from lakehouse.bronze import ingest_bronze
from lakehouse.config import load_config
from lakehouse.errors import LandingNotFound
from lakehouse.generator import generate
from lakehouse.gold import build_gold
from lakehouse.lineage import upstream_chain
from lakehouse.pii import DEMO_KEY, hmac_sha256_py, pii_token
from lakehouse.silver import refine_silver
from lakehouse.tables import current_version, read_table


def _count(spark, cfg, name, version=None):
    return read_table(spark, cfg.table(name), version).count()


def _lineage(spark, cfg, job):
    return read_table(spark, cfg.table("meta.lineage")).where(F.col("job") == job).orderBy("ended_at").collect()


def test_every_bronze_transaction_is_accounted_for_per_defect_type(spark, lake):
    cfg, expected = lake.cfg, lake.manifest["expected"]
    bronze = _count(spark, cfg, "bronze.transactions_raw")
    silver = _count(spark, cfg, "silver.transactions")
    reasons = {r["reason"]: r["count"] for r in
               read_table(spark, cfg.table("quarantine.transactions")).groupBy("reason").count().collect()}
    refine = _lineage(spark, cfg, "refine_silver")[0]
    duplicates = refine["metrics"]["transactions_unchanged"]

    assert bronze == expected["bronze_transactions"]
    assert reasons == expected["quarantine_transactions"]
    assert duplicates == expected["duplicate_transactions"]
    assert silver == expected["silver_transactions"]
    assert bronze == silver + sum(reasons.values()) + duplicates


def test_quarantine_keeps_the_raw_row_reason_and_batch(spark, lake):
    q = read_table(spark, lake.cfg.table("quarantine.transactions"))
    assert q.where("raw IS NULL OR reason IS NULL OR detail IS NULL OR _batch_id = ''").count() == 0
    bad_type = q.where("reason = 'invalid_type'").first()
    assert bad_type["detail"].startswith("amount is not a double")
    assert '"txn_id"' in bad_type["raw"]


def test_late_events_are_kept_in_silver(spark, lake):
    late = (read_table(spark, lake.cfg.table("silver.transactions"))
            .where(F.to_date("event_time") < F.to_date(F.substring("_batch_id", 7, 10))).count())
    assert late == lake.manifest["defects"]["late_event"]


def test_bronze_keeps_raw_payload_and_where_it_came_from(spark, lake):
    bronze = read_table(spark, lake.cfg.table("bronze.transactions_raw"))
    assert set(bronze.columns) == {"raw", "_source_file", "_batch_id", "_ingested_at", "_file_size", "_file_modified"}
    files = {r[0].rsplit("/", 2)[-2] for r in bronze.select("_source_file").distinct().collect()}
    assert files == set(lake.manifest["batches"])
    customers = read_table(spark, lake.cfg.table("bronze.customers_raw"))
    assert customers.where("raw LIKE 'customer_id,%'").count() == 0  # CSV headers are not rows


def test_no_pii_in_clear_text_in_silver_or_gold(spark, lake):
    clear = re.compile(r"\b4\d{15}\b|@example\.com|Customer \d+|\b10\.\d+\.\d+\.\d+\b")
    for name in lake.cfg.table_names():
        if name.split(".")[0] not in ("silver", "gold") or current_version(spark, lake.cfg.table(name)) is None:
            continue  # scoring and drift tables are written by later stages, not in this lakehouse
        df = read_table(spark, lake.cfg.table(name))
        assert not {"card_number", "email", "ip_address", "customer_name"} & set(df.columns), name
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        for row in df.select(*strings).collect():
            for value in row:
                assert value is None or not clear.search(value), f"{name}: {value}"


def test_pii_tokens_are_keyed_hmacs(spark, lake):
    tokens = spark.createDataFrame([("4111111111111111",), (None,)], "v string").select(pii_token(F.col("v"), lake.cfg))
    assert [r[0] for r in tokens.collect()] == [hmac_sha256_py("4111111111111111", DEMO_KEY.encode()), None]
    silver = read_table(spark, lake.cfg.table("silver.customers")).where("customer_id = 'C0000001'").first()
    assert silver["email_hash"] == hmac_sha256_py("customer1@example.com", DEMO_KEY.encode())


def test_customers_keep_history_as_scd2(spark, lake):
    customers = read_table(spark, lake.cfg.table("silver.customers"))
    assert customers.where("is_current").groupBy("customer_id").count().where("count > 1").count() == 0
    assert customers.where("is_current").count() == lake.manifest["customers"]
    changed = customers.groupBy("customer_id").count().where("count > 1").count()
    assert changed > 0
    closed = customers.where("NOT is_current").first()
    successor = customers.where((F.col("customer_id") == closed["customer_id"]) &
                                (F.col("valid_from") == closed["valid_to"])).count()
    assert successor == 1


def test_gold_tables_agree_with_silver(spark, lake):
    cfg = lake.cfg
    silver = read_table(spark, cfg.table("silver.transactions"))
    kpis = read_table(spark, cfg.table("gold.fraud_kpis"))
    assert kpis.agg(F.sum("txn_count")).first()[0] == silver.count()
    labelled = silver.join(read_table(spark, cfg.table("silver.labels")), "txn_id")
    assert kpis.agg(F.sum("fraud_count")).first()[0] == labelled.where("is_fraud").count()
    spend = read_table(spark, cfg.table("gold.customer_daily_spend"))
    assert spend.agg(F.sum("txn_count")).first()[0] == silver.count()


def test_an_independent_duckdb_peer_reproduces_silver_quarantine_and_gold_row_for_row(lake, tmp_path):
    """The benchmark's peer (DuckDB SQL + delta-rs) on the same landing files writes the same tables."""
    project = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "benchmarks/duckdb_peer.py", "--landing", str(lake.cfg.landing_dir),
                           "--root", str(tmp_path / "peer"), "--verify", str(lake.root)],
                          cwd=project, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "verification: identical silver rows" in done.stdout


def test_lineage_names_the_versions_read_and_written(spark, lake):
    cfg = lake.cfg
    gold_run = _lineage(spark, cfg, "build_gold")[-1]
    inputs = {i["table"]: i["version"] for i in gold_run["inputs"]}
    outputs = {o["table"]: o["version"] for o in gold_run["outputs"]}
    assert inputs == {"silver.transactions": current_version(spark, cfg.table("silver.transactions")),
                      "silver.labels": current_version(spark, cfg.table("silver.labels"))}
    assert outputs["gold.fraud_kpis"] == current_version(spark, cfg.table("gold.fraud_kpis"))
    assert gold_run["status"] == "succeeded" and gold_run["code_version"]
    chain = upstream_chain(spark, cfg, "gold.fraud_kpis", outputs["gold.fraud_kpis"])
    assert chain["produced_by"]["job"] == "build_gold"
    silver_node = next(n for n in chain["inputs"] if n["table"] == "silver.transactions")
    assert silver_node["produced_by"]["job"] == "refine_silver"
    bronze_node = next(n for n in silver_node["inputs"] if n["table"] == "bronze.transactions_raw")
    assert bronze_node["produced_by"]["job"] == "ingest_bronze"


def test_missing_landing_folder_is_a_clear_error(spark, tmp_path):
    cfg = load_config("local", root=tmp_path)
    with pytest.raises(LandingNotFound, match="landing folder .* does not exist") as err:
        ingest_bronze(spark, cfg)
    assert "tidewater generate" in err.value.hint


def test_rerun_and_new_batch(spark, tmp_path):
    """Given a lakehouse, a rerun changes nothing; a new arrival batch is ingested once, incrementally."""
    cfg = load_config("local", root=tmp_path)
    generate(cfg.landing_dir, seed=1, rows=600, days=2, start_date="2026-04-01")
    run_pipeline(spark, cfg)
    names = [n for n in cfg.table_names() if n not in ("meta.lineage", "meta.audit_log")]  # they record every run
    versions = {n: current_version(spark, cfg.table(n)) for n in names}
    counts = {n: _count(spark, cfg, n) for n in names if versions[n] is not None}

    # When every job runs again with no new files, then no table gets a new version.
    run_pipeline(spark, cfg)
    assert {n: current_version(spark, cfg.table(n)) for n in names} == versions
    assert {n: _count(spark, cfg, n) for n in counts} == counts

    # When a new arrival batch lands, then only its rows are added.
    extra = tmp_path / "extra"
    man = generate(extra, seed=2, rows=300, days=1, start_date="2026-04-03", defect_rate=0.0)
    shutil.copytree(extra / "batch-2026-04-03", cfg.landing_dir / "batch-2026-04-03")
    run_pipeline(spark, cfg)
    assert _count(spark, cfg, "bronze.transactions_raw") == counts["bronze.transactions_raw"] + man.transactions_written
    silver_v = current_version(spark, cfg.table("silver.transactions"))
    assert silver_v > versions["silver.transactions"]

    # Time travel: the earlier version still reads as it was.
    assert _count(spark, cfg, "silver.transactions", versions["silver.transactions"]) == counts["silver.transactions"]
    by_sql = catalog.sql(spark, cfg, f"SELECT count(*) FROM silver.transactions VERSION AS OF {versions['silver.transactions']}").first()[0]
    assert by_sql == counts["silver.transactions"]
    assert current_version(spark, cfg.table("gold.fraud_kpis")) > versions["gold.fraud_kpis"]


def test_gold_recomputes_only_the_dates_silver_changed_and_equals_a_full_rebuild(spark, tmp_path, monkeypatch):
    """Given gold built over four days, when a fifth day and its labels arrive, then gold replaces the
    rows of the dates those changes touched (found in silver's new rows independently here) and equals
    gold computed from all of silver; other code, --full or --force rebuild every date."""
    from lakehouse import gold

    cfg = load_config("local", root=tmp_path)
    generate(cfg.landing_dir, seed=5, rows=1500, days=6, start_date="2026-07-01")
    held = tmp_path / "held"
    for day in ("2026-07-05", "2026-07-06"):
        shutil.move(cfg.landing_dir / f"batch-{day}", held / f"batch-{day}")
    run_pipeline(spark, cfg)
    txns_ref, labels_ref = cfg.table("silver.transactions"), cfg.table("silver.labels")
    before = {name: current_version(spark, ref) for name, ref in (("txns", txns_ref), ("labels", labels_ref))}

    def results_of(run):
        return {r["table"]: r["batch"] for r in read_table(spark, cfg.table("gold.quality_results"))
                .where(F.col("run_id") == run.run_id).select("table", "batch").distinct().collect()}

    def matches_silver():
        txns, labels = read_table(spark, txns_ref), read_table(spark, labels_ref)
        return (same_rows(read_table(spark, cfg.table("gold.customer_daily_spend")), gold.customer_daily_spend(txns))
                and same_rows(read_table(spark, cfg.table("gold.merchant_daily")), gold.merchant_daily(txns, labels))
                and same_rows(read_table(spark, cfg.table("gold.fraud_kpis")), gold.fraud_kpis(txns, labels)))

    # When the fifth day lands and every job runs
    shutil.move(held / "batch-2026-07-05", cfg.landing_dir / "batch-2026-07-05")
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    run = build_gold(spark, cfg)
    # Then the dates rebuilt are those of silver's new transactions and of the transactions newly labelled
    txns = read_table(spark, txns_ref)
    new_txns = txns.exceptAll(read_table(spark, txns_ref, before["txns"]))
    new_labels = read_table(spark, labels_ref).exceptAll(read_table(spark, labels_ref, before["labels"]))
    spend_dates = {r[0] for r in new_txns.select("event_date").distinct().collect()}
    labelled_dates = {r[0] for r in txns.join(new_labels, "txn_id", "left_semi").select("event_date").distinct().collect()}
    all_dates = {r[0] for r in txns.select("event_date").distinct().collect()}
    assert spend_dates and labelled_dates and spend_dates | labelled_dates < all_dates
    assert run.metrics["gold_dates_rebuilt"] == len(spend_dates | labelled_dates)
    batches = results_of(run)
    assert batches["gold.customer_daily_spend"].startswith(f"{len(spend_dates)} dates, {min(spend_dates)} to ")
    assert batches["gold.fraud_kpis"].startswith(f"{len(spend_dates | labelled_dates)} dates, ")
    assert matches_silver()

    # When the sixth day lands and gold was built last by other code, then every date is rebuilt
    shutil.move(held / "batch-2026-07-06", cfg.landing_dir / "batch-2026-07-06")
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    monkeypatch.setattr(gold, "code_version", lambda: "another-commit")
    run = build_gold(spark, cfg)
    assert "gold_dates_rebuilt" not in run.metrics and set(results_of(run).values()) == {"full"}
    assert matches_silver()
    monkeypatch.undo()
    # And --full, like --force, rebuilds every date though silver did not change
    run = build_gold(spark, cfg, full=True)
    assert not run.skipped and set(results_of(run).values()) == {"full"}
    assert matches_silver()


def test_a_killed_refine_resumes_from_its_checkpoint(spark, tmp_path, monkeypatch):
    """Given a refine run that dies mid-way, when it runs again, then silver ends complete and exact."""
    cfg = load_config("local", root=tmp_path)
    man = generate(cfg.landing_dir, seed=9, rows=900, days=3, start_date="2026-05-01")
    ingest_bronze(spark, cfg)

    from lakehouse import silver
    real_merge = silver.merge_insert_new

    def dies_mid_batch(*args, **kwargs):
        real_merge(*args, **kwargs)  # silver is written, the checkpoint is not committed yet
        raise RuntimeError("killed")

    monkeypatch.setattr(silver, "merge_insert_new", dies_mid_batch)
    with pytest.raises(Exception, match="killed"):
        refine_silver(spark, cfg)
    monkeypatch.setattr(silver, "merge_insert_new", real_merge)

    refine_silver(spark, cfg)
    expected = man.expected()
    assert _count(spark, cfg, "silver.transactions") == expected["silver_transactions"]
    assert _count(spark, cfg, "quarantine.transactions") == sum(expected["quarantine_transactions"].values())
    failed = [r for r in _lineage(spark, cfg, "refine_silver") if r["status"] == "failed"]
    assert len(failed) == 1 and "killed" in failed[0]["error"]
    build_gold(spark, cfg)


def test_a_resent_key_is_not_inserted_again_whatever_files_the_merge_skips(spark, tmp_path):
    """Given silver written in three batches of growing keys, when a batch resends a key of the last
    one beside a new key, then only the new key is inserted (the MERGE reads only files whose key
    range meets the batch's)."""
    from lakehouse.silver import merge_insert_new
    from lakehouse.tables import commit_metrics

    cfg = load_config("local", root=tmp_path)
    ref = cfg.table("silver.transactions")

    def batch(*ids):
        return (spark.createDataFrame([(i, "f.jsonl") for i in ids], "txn_id string, _source_file string")
                .withColumn("_ingested_at", F.current_timestamp()).repartition(1))

    for ids in (("T1a", "T1b"), ("T2a", "T2b"), ("T3a", "T3b")):
        merge_insert_new(spark, ref, batch(*ids), "txn_id", {"delta.dataSkippingStatsColumns": "txn_id"})
    merge_insert_new(spark, ref, batch("T3a", "T4a"), "txn_id")
    assert commit_metrics(spark, ref, current_version(spark, ref))["numTargetRowsInserted"] == 1
    assert sorted(r["txn_id"] for r in read_table(spark, ref).collect()) == ["T1a", "T1b", "T2a", "T2b", "T3a", "T3b", "T4a"]
