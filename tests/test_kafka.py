"""Transactions on Kafka: a real KRaft broker started by the project, `generate --to-kafka`, and
ingest_bronze reading the topic into bronze exactly once, across a broker restart mid-stream."""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import conf_env, tidewater_in_process
from lakehouse import kafka_topic
from features.offline import compute_features
from features.online import materialize_online
from features.online_stream import stream_online, status_file
from features.store import online_features
from lakehouse.bronze import ingest_bronze
from lakehouse.config import load_config
from lakehouse.generator import generate
from lakehouse.silver import refine_silver
from lakehouse.tables import current_version, read_table
from services import control

ENV = "kafkatest"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Given a Kafka broker on loopback (its own ports) and an env whose transactions come from it."""
    root = tmp_path_factory.mktemp("kafka-root")
    overrides = {"storage": {"root": str(root)},
                 "sources": {"transactions": {"kind": "kafka", "topic": "transactions", "key": "customer_id",
                                              "max_messages_per_batch": 100}},
                 "services": {"kafka": {"port": 19092, "controller_port": 19093, "partitions": 2}}}
    conf = conf_env(root, ENV, overrides)
    cfg = load_config(ENV, root, conf_dir=conf)
    print(*control.start_services(cfg, ["kafka"]), sep="\n")
    yield cfg, conf
    print(*control.stop_services(cfg, ["kafka"]), sep="\n")


def _bronze(spark, cfg):
    return read_table(spark, cfg.table("bronze.transactions_raw"))


def _published(cfg) -> int:
    return sum(kafka_topic.end_offsets(cfg, "transactions").values())


def test_generate_to_kafka_publishes_every_transaction_and_bronze_takes_each_once(spark, broker):
    cfg, conf = broker
    result = tidewater_in_process(["generate", "--to-kafka", "--env", ENV, "--root", str(cfg.root),
                                   "--rows", "900", "--days", "3", "--warmup-days", "0"],
                                  env={"TIDEWATER_CONF_DIR": str(conf)})
    assert result.returncode == 0, result.stderr
    man = __import__("json").loads((cfg.landing_dir / "_manifest.json").read_text())
    assert f"published {man['transactions_written']} messages" in result.stdout
    assert _published(cfg) == man["transactions_written"]
    assert not list(cfg.landing_dir.glob("batch-*/transactions*.jsonl")), "published files stay in the landing folder"
    assert list(cfg.landing_dir.glob("batch-*/customers.csv")), "file sources still land as files"

    ingest_bronze(spark, cfg)
    bronze = _bronze(spark, cfg)
    rows = bronze.count()
    assert rows == man["transactions_written"]
    assert bronze.select("_partition", "_offset").distinct().count() == rows
    assert {r["_batch_id"] for r in bronze.select("_batch_id").distinct().collect()} == set(man["batches"])
    # The planted defects arrive as they were sent: a truncated JSON line is in bronze, raw, for silver to quarantine.
    assert bronze.where("raw NOT LIKE '%}'").count() == man["defects"]["malformed"]
    one = bronze.where("_partition = 0").orderBy("_offset").first()
    assert one["_source_file"] == f"kafka:transactions/0/{one['_batch_id']}"


def test_a_broker_restarted_mid_stream_loses_and_doubles_nothing(spark, broker):
    cfg, _ = broker
    before = _bronze(spark, cfg).count()
    version = current_version(spark, cfg.table("bronze.transactions_raw"))
    generate(cfg.landing_dir / "more", rows=900, days=3, start_date="2026-02-01", seed=7, warmup_days=0)
    sent = kafka_topic.publish_batches(cfg, sorted((cfg.landing_dir / "more").glob("batch-*")))
    assert sent > 600  # several micro-batches of 100

    failure: list[BaseException] = []

    def ingest():
        try:
            ingest_bronze(spark, cfg, landing=str(cfg.landing_dir))
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            failure.append(err)

    worker = threading.Thread(target=ingest)
    worker.start()
    deadline = time.time() + 120
    while current_version(spark, cfg.table("bronze.transactions_raw")) == version and time.time() < deadline:
        time.sleep(0.2)
    stopped = list(control.stop_services(cfg, ["kafka"]))
    mid_stream = worker.is_alive() and current_version(spark, cfg.table("bronze.transactions_raw")) > version
    restarted = [*stopped, *control.start_services(cfg, ["kafka"])]
    worker.join(timeout=300)
    assert mid_stream, "the broker stopped after ingest had finished: nothing was tested"
    assert not worker.is_alive() and not failure, (restarted, failure)

    bronze = _bronze(spark, cfg)
    assert bronze.count() == before + sent == _published(cfg)
    assert bronze.select("_partition", "_offset").distinct().count() == bronze.count()

    ingest_bronze(spark, cfg)  # a rerun finds nothing new
    assert _bronze(spark, cfg).count() == before + sent


def test_an_ingest_killed_mid_stream_resumes_with_each_message_once(spark, broker):
    """Given more messages than one micro-batch takes, when an ingest process is killed (-9) after its
    first bronze commit and ingest runs again, then bronze holds every message exactly once (the rerun
    first replays the batch the killed run had planned)."""
    import os
    import signal
    import subprocess
    import sys

    cfg, conf = broker
    before, version = _bronze(spark, cfg).count(), current_version(spark, cfg.table("bronze.transactions_raw"))
    generate(cfg.landing_dir / "killed", rows=1200, days=2, start_date="2026-02-10", seed=9, warmup_days=0)
    sent = kafka_topic.publish_batches(cfg, sorted((cfg.landing_dir / "killed").glob("batch-*")))
    proc = subprocess.Popen([sys.executable, "-m", "lakehouse.cli", "run", "ingest_bronze", "--env", ENV,
                             "--root", str(cfg.root)], env={**os.environ, "TIDEWATER_CONF_DIR": str(conf)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while current_version(spark, cfg.table("bronze.transactions_raw")) == version and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = _bronze(spark, cfg).count() - before
    assert 0 < partial < sent, "the kill did not land mid-stream: nothing was tested"

    ingest_bronze(spark, cfg)
    bronze = _bronze(spark, cfg)
    assert bronze.count() == before + sent == _published(cfg)
    assert bronze.select("_partition", "_offset").distinct().count() == bronze.count()


def test_a_source_that_moves_from_landing_files_to_the_topic_resumes_on_a_checkpoint_of_its_own(spark, broker, tmp_path):
    cfg, _ = broker
    files_cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"root": str(tmp_path)}),
                                       "sources": load_config("local", tmp_path).sources})
    generate(files_cfg.landing_dir, rows=300, days=1, start_date="2026-03-01", seed=3, warmup_days=0)
    ingest_bronze(spark, files_cfg)
    from_files = _bronze(spark, files_cfg).count()
    assert from_files > 250

    kafka_cfg = files_cfg.model_copy(update={"sources": cfg.sources})
    ingest_bronze(spark, kafka_cfg)  # the files' checkpoint is not the topic's: no "Expected e.g. {topicA...}"
    bronze = _bronze(spark, kafka_cfg)
    assert bronze.count() == from_files + _published(cfg)
    assert bronze.where("_topic IS NOT NULL").select("_partition", "_offset").distinct().count() == _published(cfg)
    ingest_bronze(spark, kafka_cfg)
    assert _bronze(spark, kafka_cfg).count() == from_files + _published(cfg)


def _ids_in(folder, field: str) -> list[str]:
    """The `field` of every parsable transaction line the generator wrote under `folder`."""
    ids = set()
    for path in folder.glob("batch-*/transactions*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                ids.add(json.loads(line)[field])
            except (ValueError, KeyError, TypeError):
                pass
    return sorted(i for i in ids if i)


def _online(cfg, key: str, ids: list[str]) -> dict:
    return online_features(cfg, key, ids)


def _same(a: dict, b: dict) -> list[str]:
    """Columns where two online lookups differ (floats to 1e-9, relative)."""
    return [col for col in a if any(x != y and not (isinstance(x, float) and isinstance(y, float)
                                                      and abs(x - y) <= 1e-9 * max(1.0, abs(x)))
                                    for x, y in zip(a[col], b[col]))]


def test_the_online_store_follows_the_topic_with_the_values_the_batch_path_materializes(spark, broker):
    """Given silver and the online store up to date with the topic, when new transactions (defects
    included) are published and stream_online runs, then every touched customer's and merchant's
    online features equal what ingest -> refine -> compute_features -> materialize_online give later."""
    cfg, _ = broker
    for step in (refine_silver, compute_features, materialize_online):
        step(spark, cfg)
    silver_before = read_table(spark, cfg.table("silver.transactions")).count()
    fresh = cfg.landing_dir / "fresh"
    generate(fresh, rows=600, days=1, start_date="2026-02-04", seed=5, warmup_days=0, defect_rate=0.05)
    customers, merchants = _ids_in(fresh, "customer_id"), _ids_in(fresh, "merchant_id")
    stale = _online(cfg, "customer_id", customers)
    kafka_topic.publish_batches(cfg, sorted(fresh.glob("batch-*")))

    run = stream_online(spark, cfg)
    streamed = {"customer_id": _online(cfg, "customer_id", customers),
                "merchant_id": _online(cfg, "merchant_id", merchants)}
    assert _same(stale, streamed["customer_id"]), "the stream changed no customer's features"
    status = json.loads(status_file(cfg).read_text())
    assert status["state"] == "stopped" and status["freshness_p50_s"] >= 0

    for step in (ingest_bronze, refine_silver, compute_features, materialize_online):
        step(spark, cfg)
    assert run.metrics["rows"] == read_table(spark, cfg.table("silver.transactions")).count() - silver_before, \
        "the stream counted exactly the transactions silver kept"
    for key, ids in (("customer_id", customers), ("merchant_id", merchants)):
        assert not _same(streamed[key], _online(cfg, key, ids)), key

    again = stream_online(spark, cfg)  # a rerun: the checkpoint has read everything
    assert again.metrics.get("rows", 0) == 0


def test_services_start_features_makes_a_published_transaction_visible_online_in_seconds(broker, tmp_path):
    """Given `services start features`, when one transaction of a new customer is published, then the
    customer's online features count it within seconds (timed from publish to a lookup that sees it)."""
    cfg, conf = broker
    txn = {"txn_id": "T-FRESH-1", "card_id": "K-FRESH-1", "customer_id": "C-FRESH-1", "merchant_id": "M000001",
           "merchant_category": "grocery", "amount": 12.5, "currency": "EUR", "country": "DE", "channel": "pos",
           "device_id": "D-FRESH-1", "event_time": "2026-02-05T10:00:00Z", "card_number": "4000000000000002",
           "customer_name": "Fresh", "email": "fresh@example.com", "ip_address": "10.0.0.1"}
    batch = tmp_path / "batch-fresh"
    batch.mkdir()
    print(*control.start_services(cfg, ["features"], env=ENV, conf_dir=str(conf)), sep="\n")
    try:
        (batch / "transactions.jsonl").write_text(json.dumps(txn) + "\n")
        published = time.time()
        assert kafka_topic.publish_batches(cfg, [batch]) == 1
        seen = None
        while seen is None and time.time() - published < 60:
            if _online(cfg, "customer_id", ["C-FRESH-1"])["txn_count_24h"][0] == 1:
                seen = time.time() - published
            time.sleep(0.05)
    finally:
        print(*control.stop_services(cfg, ["features"]), sep="\n")
    assert seen is not None, "the transaction never reached the online store"
    print(f"published -> visible online in {seen:.2f} s")
    assert _online(cfg, "customer_id", ["C-FRESH-1"])["avg_amount_30d"][0] == 12.5


def test_ingest_without_the_broker_is_a_one_line_error_with_a_hint(broker):
    cfg, conf = broker
    print(*control.stop_services(cfg, ["kafka"]), sep="\n")
    try:
        result = tidewater_in_process(["run", "ingest_bronze", "--env", ENV, "--root", str(cfg.root)],
                                      env={"TIDEWATER_CONF_DIR": str(conf)})
    finally:
        print(*control.start_services(cfg, ["kafka"]), sep="\n")
    assert result.returncode != 0
    assert "Kafka at 127.0.0.1:19092 did not answer" in result.stderr
    assert "tidewater services start kafka" in result.stderr
    assert "Traceback" not in result.stderr


def test_generate_to_kafka_in_an_env_without_a_kafka_source_says_which_env_to_use(tmp_path):
    result = tidewater_in_process(["generate", "--to-kafka", "--root", str(tmp_path), "--rows", "200", "--days", "2"])
    assert result.returncode != 0
    assert "reads every source from landing files" in result.stderr and "--env kafka" in result.stderr
