"""Transactions on Kafka: a real KRaft broker started by the project, `generate --to-kafka`, and
ingest_bronze reading the topic into bronze exactly once, across a broker restart mid-stream."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import conf_env, tidewater_in_process
from lakehouse import kafka_topic
from lakehouse.bronze import ingest_bronze
from lakehouse.config import load_config
from lakehouse.generator import generate
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
