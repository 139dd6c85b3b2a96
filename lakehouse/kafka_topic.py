"""Sources on a Kafka topic: publishing arrival batches to it, and reading it into bronze.

A message is one of the source's lines exactly as a landing file would hold it, bad ones included
(bronze keeps what arrived; silver quarantines what it cannot use). Each is keyed by the source's key
field, so one customer's transactions stay in order on one partition, and carries its arrival batch
in a header: bronze's `_batch_id` means the same for both kinds of source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config, SourceConf
from lakehouse.errors import TidewaterError

BATCH_HEADER = "tidewater.batch"


class KafkaUnavailable(TidewaterError):
    """The Kafka broker did not answer, or did not take every message."""


def topic_of(name: str, src: SourceConf) -> str:
    return src.topic or name


def kafka_sources(cfg: Config) -> dict[str, SourceConf]:
    return {name: src for name, src in cfg.sources.items() if src.kind == "kafka"}


def _unreachable(cfg: Config, what: str) -> KafkaUnavailable:
    return KafkaUnavailable(f"Kafka at {cfg.services.kafka_bootstrap} {what}",
                            hint="`tidewater services start kafka` (with the same --root and --env)")


def ensure_topic(cfg: Config, topic: str) -> None:
    """Create the topic with services.kafka.partitions partitions unless it exists."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cfg.services.kafka_bootstrap, "log_level": 0})
    try:
        if topic in admin.list_topics(timeout=10).topics:
            return
        future = admin.create_topics([NewTopic(topic, num_partitions=cfg.services.kafka.partitions,
                                               replication_factor=1)])[topic]
        future.result(timeout=30)
    except KafkaException as err:
        if "TOPIC_ALREADY_EXISTS" in str(err):
            return
        raise _unreachable(cfg, f"did not answer ({err.args[0]})") from None


def _event_time(line: str) -> tuple[str, dict | None]:
    try:
        rec = json.loads(line)
    except ValueError:
        return "", None
    return (str(rec.get("event_time") or ""), rec) if isinstance(rec, dict) else ("", None)


def in_event_order(lines: list[str]) -> list[tuple[str, dict | None]]:
    """(line, parsed record) sorted by event time; a line without one keeps the time of the line before it."""
    keyed, last = [], ""
    for i, line in enumerate(lines):
        when, rec = _event_time(line)
        last = when or last
        keyed.append((last, i, line, rec))
    return [(line, rec) for _, _, line, rec in sorted(keyed)]


def publish_batches(cfg: Config, batches: list[Path], progress: Callable[[str], None] | None = None) -> int:
    """Publish each batch folder's files of every kafka source, batch by batch in order, then remove
    those files (the topic holds them now). Returns the messages published."""
    from confluent_kafka import Producer

    sources = kafka_sources(cfg)
    if not sources or not batches:
        return 0
    for name, src in sources.items():
        ensure_topic(cfg, topic_of(name, src))
    producer = Producer({"bootstrap.servers": cfg.services.kafka_bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4", "log_level": 0})
    failed: list[str] = []

    def delivered(err, _msg) -> None:
        if err is not None:
            failed.append(str(err))

    total = 0
    for batch in sorted(batches):
        for name, src in sources.items():
            for path in sorted(batch.glob(src.file_glob)):
                sent = 0
                for line, rec in in_event_order(path.read_text().splitlines()):
                    key = rec.get(src.key) if rec is not None and src.key else None
                    while True:
                        try:
                            producer.produce(topic_of(name, src), value=line.encode(),
                                             key=None if key is None else str(key).encode(),
                                             headers=[(BATCH_HEADER, batch.name.encode())], on_delivery=delivered)
                            break
                        except BufferError:  # the local queue is full: let deliveries drain it
                            producer.poll(0.1)
                    sent += 1
                    producer.poll(0)
                if producer.flush(60) or failed:
                    raise _unreachable(cfg, f"did not take every message of {path} "
                                            f"({failed[0] if failed else 'timed out'}); the file was kept")
                path.unlink()
                total += sent
                if progress:
                    progress(f"{batch.name}: {sent} {name} messages -> Kafka topic {topic_of(name, src)}")
    return total


def read_topic(spark: SparkSession, cfg: Config, name: str, src: SourceConf) -> DataFrame:
    """The topic as a stream from its first offset; the query's checkpoint says where it resumes."""
    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", cfg.services.kafka_bootstrap)
              .option("subscribe", topic_of(name, src))
              .option("startingOffsets", "earliest")
              .option("includeHeaders", "true")
              .option("failOnDataLoss", "true"))  # a message deleted before bronze read it is an error
    if src.max_messages_per_batch:
        reader = reader.option("maxOffsetsPerTrigger", src.max_messages_per_batch)
    return reader.load()


def with_message_metadata(messages: DataFrame) -> DataFrame:
    """Kafka messages -> bronze rows: the payload as received, its batch, and where it sat on the topic.

    `_source_file` names the batch's messages on one partition (`kafka:<topic>/<partition>/<batch>`),
    the unit a landing file is for file sources (schema-change screening counts per source file)."""
    batch = F.element_at(F.filter("headers", lambda h: h["key"] == F.lit(BATCH_HEADER)), 1)["value"].cast("string")
    batch = F.coalesce(batch, F.lit("kafka"))
    return messages.select(
        F.col("value").cast("string").alias("raw"),
        F.format_string("kafka:%s/%d/%s", "topic", "partition", batch).alias("_source_file"),
        batch.alias("_batch_id"),
        F.current_timestamp().alias("_ingested_at"),
        F.lit(None).cast("long").alias("_file_size"),
        F.lit(None).cast("timestamp").alias("_file_modified"),
        F.col("topic").alias("_topic"),
        F.col("partition").alias("_partition"),
        F.col("offset").alias("_offset"),
        F.col("timestamp").alias("_published_at"),
    )


def end_offsets(cfg: Config, topic: str) -> dict[int, int]:
    """partition -> the offset after its last message (what a complete ingest has read up to)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": cfg.services.kafka_bootstrap, "group.id": "tidewater-offsets",
                         "enable.auto.commit": False, "log_level": 0})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise KafkaUnavailable(f"Kafka at {cfg.services.kafka_bootstrap} has no topic {topic}",
                                   hint="`tidewater generate --to-kafka` creates it and publishes the transactions")
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    except KafkaException as err:
        raise _unreachable(cfg, f"did not answer ({err.args[0]})") from None
    finally:
        consumer.close()
