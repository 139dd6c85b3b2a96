"""Governance: erasing one customer everywhere (tables, disk, online store), retention, and the PII scan."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from conftest import conf_env, tidewater_in_process
from features.store import online_features, repo_config
from lakehouse.generator import continue_scenario
from lakehouse.pii import hmac_sha256_py, pii_key
from lakehouse.tables import current_version, read_table


def strings_on_disk(folder: Path) -> set[str]:
    """Every string value (nested ones too) of every Parquet file under a folder, whatever version
    (or none) references it: what is on disk, not what the current version shows."""
    out: set[str] = set()

    def collect(column) -> None:
        t = column.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            out.update(v for v in column.to_pylist() if v is not None)
        elif pa.types.is_struct(t):
            for i in range(t.num_fields):
                collect(pa.chunked_array([c.field(i) for c in column.chunks], type=t.field(i).type))
        elif pa.types.is_map(t):
            collect(pa.chunked_array([c.keys for c in column.chunks], type=t.key_type))
            collect(pa.chunked_array([c.items for c in column.chunks], type=t.item_type))
        elif pa.types.is_list(t):
            collect(pa.chunked_array([c.flatten() for c in column.chunks], type=t.value_type))

    for file in folder.rglob("*.parquet"):
        if "_delta_log" in file.parts:
            continue  # the log's checkpoints hold file statistics, not rows (see the README)
        table = pq.read_table(file)
        for column in table.columns:
            collect(column)
    return out


def mentions(values: set[str], needles: set[str]) -> set[str]:
    """The needles that appear inside any of the values (a raw line names an id within its text)."""
    return {n for n in needles if any(n in v for v in values)}


def online_rows(cfg, subject: str) -> int:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = serialize_entity_key(EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=subject)]),
                               entity_key_serialization_version=3)
    with sqlite3.connect(repo_config(cfg).online_store.path) as conn:
        return conn.execute(f'SELECT count(*) FROM "{cfg.features.project}_customer_features" WHERE entity_key = ?',
                            (key,)).fetchone()[0]


def tw(demo_lake, *args):
    return tidewater_in_process([*args, "--env", demo_lake.env, "--root", str(demo_lake.root)],
                                env={"TIDEWATER_CONF_DIR": str(demo_lake.conf_dir)})


def test_pii_scan_finds_the_clear_pii_of_bronze_and_quarantine_and_none_in_silver_gold_or_features(demo_lake):
    # Given the demo lakehouse (bronze keeps raw lines with card numbers, emails, IPs and names; silver hashes them)
    # When the scan runs
    result = tw(demo_lake, "pii", "scan", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    found = {(f["table"], f["kind"]) for f in report["findings"]}
    # Then bronze's raw transactions hold every kind, the customers' lines cards, emails and names
    assert {("bronze.transactions_raw", k) for k in ("credit_card", "email", "ip_address", "person_name")} <= found
    assert {("bronze.customers_raw", k) for k in ("email", "person_name")} <= found
    assert any(t.startswith("quarantine.") for t, _ in found)
    # and no silver, gold or features table holds any, though each was scanned
    assert not {t for t, _ in found if t.split(".")[0] in ("silver", "gold", "features")}
    assert {"silver.transactions", "silver.customers", "gold.predictions", "features.training_set"} <= set(
        report["rows_scanned"])
    # and where is said by position, never by value
    first = next(f for f in report["findings"] if f["table"] == "bronze.transactions_raw" and f["kind"] == "email")
    assert first["first_at"].startswith("row ") and "@" not in json.dumps(report)
    assert "no offline name recognizer" in report["person_name"]


@pytest.mark.late
@pytest.mark.erases
def test_erase_removes_a_customer_from_every_table_the_disk_and_the_online_store(spark, demo_lake):
    from scoring.stream import score_stream
    from lakehouse.silver import refine_silver
    from lakehouse.bronze import ingest_bronze

    cfg = demo_lake.cfg
    # Given a customer with transactions, labels, predictions, features and an online row
    subject = (read_table(spark, cfg.table("gold.predictions_stream")).groupBy("customer_id").count()
               .orderBy(F.desc("count"), "customer_id").first()["customer_id"])
    customer = read_table(spark, cfg.table("silver.customers")).where(F.col("customer_id") == subject).first()
    txns = {r.txn_id for r in read_table(spark, cfg.table("silver.transactions"))
            .where(F.col("customer_id") == subject).select("txn_id").collect()}
    needles = {subject, customer["card_hash"], customer["email_hash"], *txns}
    assert online_rows(cfg, subject) > 0
    folders = {name: Path(cfg.table(name).path) for name in cfg.table_names() if Path(cfg.table(name).path).exists()}
    assert mentions(strings_on_disk(folders["bronze.transactions_raw"]), {subject})
    dry = tw(demo_lake, "erase", "--customer", subject, "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    planned = {r["table"]: r["rows"] for r in json.loads(dry.stdout)}
    versions = {name: current_version(spark, cfg.table(name)) for name in folders}

    # When the customer is erased
    result = tw(demo_lake, "erase", "--customer", subject, "--format", "json")

    # Then the dry run changed nothing and counted what the erasure removed, table by table
    assert result.returncode == 0, result.stderr
    erased = {r["table"]: r for r in json.loads(result.stdout)}
    assert {t: r["rows_removed"] for t, r in erased.items()} == planned
    assert {"bronze.transactions_raw", "bronze.customers_raw", "bronze.labels_raw", "silver.transactions",
            "silver.customers", "silver.labels", "gold.customer_daily_spend", "gold.predictions",
            "gold.predictions_stream", "features.customer_features", "features.training_set",
            "online:customer_features"} <= set(erased)
    assert "gold.fraud_kpis" not in erased and "features.merchant_features" not in erased
    for name, row in erased.items():
        if not name.startswith("online:"):
            assert row["version_before"] == versions[name] and row["version_after"] > versions[name]
            assert row["files_vacuumed"] > 0
    # and no current version of any table holds the customer, their transactions or their tokens
    for name in folders:
        df = read_table(spark, cfg.table(name))
        text = F.concat_ws("|", *[F.col(f.name) for f in df.schema if f.dataType.simpleString() == "string"])
        hits = df.where(F.greatest(*[F.lit(False), *[text.contains(n) for n in needles]])).count()
        assert hits == 0, f"{name} still holds {hits} rows of {subject}"
    # and no Parquet file under any table's folder does either (the old versions' files are gone)
    for name, folder in folders.items():
        assert not mentions(strings_on_disk(folder), needles), f"{name}'s files still hold {subject}"
    # and the erasure's own commits do not write the customer's id into the tables' logs
    for name, row in erased.items():
        if not name.startswith("online:"):
            for version in range(row["version_before"] + 1, row["version_after"] + 1):
                commit = folders[name] / "_delta_log" / f"{version:020d}.json"
                assert not mentions({commit.read_text()}, needles), f"{name}@v{version}'s commit names {subject}"
    # and the online store has no row for the customer
    assert online_rows(cfg, subject) == 0
    looked_up = online_features(cfg, "customer_id", [subject])
    assert all(values == [None] for column, values in looked_up.items() if column != "customer_id")
    # and meta.erasures lists each table by the customer's token, never the id
    token = hmac_sha256_py(subject, pii_key(cfg))
    recorded = read_table(spark, cfg.table("meta.erasures")).where(F.col("subject_token") == token).collect()
    assert {r.table: r.rows_removed for r in recorded} == planned
    assert subject not in json.dumps([r.asDict() for r in recorded], default=str)

    # When the erasure runs again
    again = tw(demo_lake, "erase", "--customer", subject)
    # Then it finds nothing and changes nothing
    assert again.returncode == 0 and "nothing to erase" in again.stdout and "erased on" in again.stdout
    assert {n: current_version(spark, cfg.table(n)) for n in erased if not n.startswith("online:")} == {
        n: r["version_after"] for n, r in erased.items() if not n.startswith("online:")}

    # When the streams run past the delete commits, and then a new day arrives
    refine_silver(spark, cfg)
    score_stream(spark, cfg)
    scored = read_table(spark, cfg.table("gold.predictions_stream")).count()
    day = continue_scenario(cfg.landing_dir, cfg.landing_dir, 1)
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    score_stream(spark, cfg)
    # Then the stream scored the new day's transactions
    new_day = read_table(spark, cfg.table("gold.predictions_stream")).count() - scored
    assert new_day > 0 and day.transactions_written > 0


def test_retention_vacuums_files_past_the_layers_window_and_sets_the_tables_properties(spark, tmp_path):
    from lakehouse.config import load_config

    # Given a bronze table with one version's files replaced, and bronze's window at 0 hours
    conf = conf_env(tmp_path, "retention", {"governance": {"retention": {"bronze": "0h", "silver": "30d"}}})
    cfg = load_config("retention", root=tmp_path / "root", conf_dir=conf)
    ref = cfg.table("bronze.labels_raw")
    spark.createDataFrame([("a",), ("b",)], "raw string").write.format("delta").save(ref.path)
    spark.createDataFrame([("c",)], "raw string").write.format("delta").mode("overwrite").save(ref.path)
    before = len(list(Path(ref.path).glob("*.parquet")))
    args = ["retention", "apply", "--env", "retention", "--root", str(cfg.root), "--format", "json"]
    # When retention is counted, then applied
    dry = tidewater_in_process([*args, "--dry-run"], env={"TIDEWATER_CONF_DIR": str(conf)})
    result = tidewater_in_process(args, env={"TIDEWATER_CONF_DIR": str(conf)})
    # Then the dry run counted the replaced version's file and removed nothing; the run removed it
    assert dry.returncode == 0 and result.returncode == 0, result.stderr
    assert json.loads(dry.stdout) == [{"table": "bronze.labels_raw", "window": "0h", "properties_set": False,
                                       "files_removed": before - 1}]
    assert json.loads(result.stdout) == [{"table": "bronze.labels_raw", "window": "0h", "properties_set": True,
                                          "files_removed": before - 1}]
    assert len(list(Path(ref.path).glob("*.parquet"))) == 1
    assert [r.raw for r in read_table(spark, ref).collect()] == ["c"]
    properties = spark.sql(f"DESCRIBE DETAIL delta.`{ref.path}`").first()["properties"]
    assert properties["delta.deletedFileRetentionDuration"] == "interval 0 hours"
    assert properties["delta.logRetentionDuration"] == "interval 0 hours"
    # and a second run has nothing left to remove and sets nothing again
    again = tidewater_in_process(args, env={"TIDEWATER_CONF_DIR": str(conf)})
    assert json.loads(again.stdout)[0]["files_removed"] == 0 and not json.loads(again.stdout)[0]["properties_set"]


def test_an_erasure_waits_for_a_stream_that_has_not_read_every_commit(spark, tmp_path):
    from lakehouse.config import load_config

    # Given bronze lines of customer C1, and a stream over bronze that read the first commit only
    cfg = load_config("local", root=tmp_path)
    ref = cfg.table("bronze.transactions_raw")
    lines = lambda *ids: spark.createDataFrame([(json.dumps({"txn_id": t, "customer_id": "C1"}),) for t in ids],  # noqa: E731
                                               "raw string")
    lines("T1").write.format("delta").save(ref.path)
    checkpoint = cfg.checkpoint_dir("refine_silver", "transactions")

    def drain() -> None:
        (spark.readStream.format("delta").option("skipChangeCommits", "true").load(ref.path).writeStream
         .format("noop").option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start()
         .awaitTermination())

    drain()
    lines("T2", "T3").write.format("delta").mode("append").save(ref.path)
    args = ["erase", "--customer", "C1", "--root", str(tmp_path), "--env", "local", "--format", "json"]
    # When the customer is erased before the stream has read the second commit
    early = tidewater_in_process(args)
    # Then the erasure stops, says which stream and versions, and changes nothing
    assert early.returncode == 2
    assert early.stderr.startswith("error: the stream refine_silver/transactions has not read "
                                   "bronze.transactions_raw versions 1")
    assert current_version(spark, ref) == 1 and read_table(spark, ref).count() == 3
    # and once the stream has caught up, it erases, and the stream passes over the delete commit
    drain()
    done = tidewater_in_process(args)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["rows_removed"] == 3 and read_table(spark, ref).count() == 0
    lines("T4").write.format("delta").mode("append").save(ref.path)
    drain()
