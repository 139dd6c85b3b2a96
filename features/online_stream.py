"""stream_online: keep the online store current, seconds after a transaction arrives.

materialize_online copies the offline feature tables, which move only when the batch pipeline runs
(ingest -> refine -> compute_features). This stream reads transactions as they arrive: the Kafka
topic when transactions come from Kafka (cleaned here with silver's own structural rules and its
declared row-level quarantine checks, so a message silver would quarantine never counts), otherwise
silver's Delta stream. For each micro-batch it recomputes the touched entities' newest rows with the
batch job's window rule (features.compute, over silver's history plus what the stream has seen) and
writes them to the online store: the values materialize_online writes once the pipeline has caught up.

Freshness is measured per message: the time its online row was written minus the time Kafka took the
message (silver rows: the time ingest read them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import time
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse import kafka_topic
from lakehouse.cli_options import option
from lakehouse.config import Config, FeatureViewConf
from lakehouse.console import progress
from lakehouse.errors import TableNotFound
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.refine import SILVER_LABELS_SCHEMA, TRANSACTION_RULES, refine, with_amount_eur, within_limit
from lakehouse.schemas import spark_schema
from lakehouse.tables import create_if_missing, current_version, read_table
from features.compute import EVENT_TIME, latest_feature_rows
from features.sources import SOURCES
from features.store import feature_store, online_store_errors
from quality.rules import failing_rows

JOB = "stream_online"
SOURCE = "transactions"
SILVER = ("silver.transactions", "silver.customers", "silver.labels")
SEEN = "features.stream_transactions"


@dataclass
class StreamTransaction:
    """A transaction the stream took from Kafka before silver has it: the fields the feature views'
    event streams (features.sources) are built from, and when it arrived."""

    txn_id: str
    customer_id: str
    merchant_id: str
    event_time: dt.datetime
    amount_eur: float | None
    country: str | None
    _ingested_at: dt.datetime | None


CUSTOMERS_SCHEMA = "customer_id string, country string, valid_from timestamp, valid_to timestamp"
EVENT_FIELDS = ("txn_id", "customer_id", "merchant_id", "event_time", "amount_eur", "country")
# When the platform first had a row: Kafka's timestamp of the message, or the time ingest read the file.
ARRIVED = "_ingested_at"
# Silver's rules without its PII: features need no card, e-mail or IP, so this stream never reads a key.
FEATURE_RULES = dataclasses.replace(TRANSACTION_RULES, hashed={},
                                    dropped=TRANSACTION_RULES.dropped + tuple(TRANSACTION_RULES.hashed))


def status_file(cfg: Config):
    return cfg.root / "streams" / JOB / "status.json"


def write_status(cfg: Config, **status) -> None:
    path = status_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"updated_at": time.time(), "pid": os.getpid(), **status}, default=str))
    tmp.replace(path)


def from_kafka(cfg: Config) -> bool:
    return cfg.sources[SOURCE].kind == "kafka"


def clean_messages(cfg: Config, messages: DataFrame) -> DataFrame:
    """Kafka messages -> the rows silver would keep: parsed, typed, complete, passing every declared
    row-level quarantine check, with amount_eur; `_ingested_at` is the time Kafka took the message."""
    rows = kafka_topic.with_message_metadata(messages).withColumn(ARRIVED, F.col("_published_at"))
    valid, _ = refine(within_limit(rows, cfg.sources[SOURCE].max_record_chars), FEATURE_RULES, b"")
    table = cfg.quality.get(f"silver.{SOURCE}")
    for check in (table.checks if table else []):
        if check.policy == "quarantine":  # the config admits only row-level checks here, each with a predicate
            valid = valid.where(~F.coalesce(failing_rows(check), F.lit(False)))
    return with_amount_eur(valid, cfg.currencies)


def new_transactions(silver: DataFrame, batch: DataFrame) -> DataFrame:
    """The batch's transactions silver does not hold yet, once each (silver's first arrival wins)."""
    first = Window.partitionBy("txn_id").orderBy(ARRIVED, "_source_file")
    once = batch.withColumn("_rn", F.row_number().over(first)).where("_rn = 1").drop("_rn")
    return once.join(silver.select("txn_id"), "txn_id", "left_anti")


def remember(spark: SparkSession, cfg: Config, fresh: DataFrame) -> DataFrame:
    """Keep the batch's new transactions in features.stream_transactions (an append of those it does
    not hold yet: a replayed batch adds nothing twice) and return every transaction the stream holds:
    the next micro-batches' windows need them before the batch pipeline brings them to silver."""
    ref = cfg.table(SEEN)
    create_if_missing(spark, ref.path, spark_schema(StreamTransaction))
    held = read_table(spark, ref)
    (fresh.select(*EVENT_FIELDS, ARRIVED).join(held.select("txn_id"), "txn_id", "left_anti")
     .write.format("delta").mode("append").save(ref.path))
    return read_table(spark, ref)


def forget_refined(spark: SparkSession, cfg: Config) -> None:
    """Drop the stream's transactions silver has caught up with: silver is their record from now on."""
    ref = cfg.table(SEEN)
    if current_version(spark, ref) is None:
        return
    if current_version(spark, cfg.table("silver.transactions")) is None:
        return
    silver_ids = read_table(spark, cfg.table("silver.transactions")).select("txn_id")
    DeltaTable.forPath(spark, ref.path).alias("t").merge(silver_ids.alias("s"), "t.txn_id = s.txn_id") \
        .whenMatchedDelete().execute()


def latest_rows(events: DataFrame, view: FeatureViewConf, since: dt.datetime) -> DataFrame:
    """Each entity's newest feature row, computed over its events from `since` on (at least the
    longest window before the batch's first event: every window of that row is complete)."""
    return latest_feature_rows(events.where(F.col(view.timestamp) >= F.lit(since)), view)


def write_online(store, name: str, rows: DataFrame) -> int:
    """Write rows to the online store through Feast (Arrow types kept: a null stays a null)."""
    import pandas as pd

    frame = rows.toArrow().to_pandas(types_mapper=pd.ArrowDtype)
    if frame.empty:
        return 0
    store.write_to_online_store(name, frame)
    return len(frame)


class SilverCache:
    """silver's tables as the stream reads them, held in memory until a table gets a new version: the
    batch pipeline moves silver every few minutes, the stream runs a micro-batch every second."""

    def __init__(self, spark: SparkSession, cfg: Config):
        self.spark, self.cfg, self.held = spark, cfg, {}

    def table(self, name: str, schema, columns: tuple[str, ...] | None = None) -> DataFrame:
        """The table at its latest version (no rows before its first refine: a topic can be streamed
        into a new lakehouse)."""
        ref = self.cfg.table(name)
        version = current_version(self.spark, ref)
        if name in self.held and self.held[name][0] == version:
            return self.held[name][1]
        if name in self.held:
            self.held[name][1].unpersist()
        df = read_table(self.spark, ref, version) if version is not None else self.spark.createDataFrame([], schema)
        df = (df.select(*columns) if columns else df).persist()
        self.held[name] = (version, df)
        return df


def update_online(spark: SparkSession, cfg: Config, store, batch: DataFrame, in_silver: bool,
                  silver: SilverCache | None = None) -> dict:
    """One micro-batch: the touched entities' latest features into the online store. Returns counts
    and each row's freshness (seconds from arrival to written)."""
    silver = silver or SilverCache(spark, cfg)
    silver_txns = silver.table("silver.transactions", spark_schema(StreamTransaction), (*EVENT_FIELDS, ARRIVED))
    customers = silver.table("silver.customers", CUSTOMERS_SCHEMA, ("customer_id", "country", "valid_from", "valid_to"))
    labels = silver.table("silver.labels", SILVER_LABELS_SCHEMA, ("txn_id", "is_fraud", "label_time"))
    fresh = (batch if in_silver else new_transactions(silver_txns, batch)).persist()
    keys = {view.key for view in cfg.features.views.values()}
    seen = fresh.agg(F.min(EVENT_TIME).alias("first"), F.collect_list(ARRIVED).alias("arrived"),
                     *(F.collect_set(k).alias(k) for k in keys)).first()  # one Spark job for all of it
    arrived = seen["arrived"] or []
    if not arrived:
        fresh.unpersist()
        return {"rows": 0, "entities": 0, "freshness": []}
    if in_silver:
        txns = silver_txns.select(*EVENT_FIELDS)
    else:
        ahead = remember(spark, cfg, fresh).join(silver_txns.select("txn_id"), "txn_id", "left_anti")
        txns = silver_txns.select(*EVENT_FIELDS).unionByName(ahead.select(*EVENT_FIELDS))
    entities = 0
    with online_store_errors(cfg):
        for name, view in cfg.features.views.items():
            longest = max(f.window_seconds for f in view.features)
            mine = txns.where(F.col(view.key).isin(seen[view.key]))  # the touched entities' transactions only
            events = SOURCES[view.source](mine, customers, labels)
            entities += write_online(store, name, latest_rows(events, view, seen["first"] - dt.timedelta(seconds=longest)))
    written = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    fresh.unpersist()
    return {"rows": len(arrived), "entities": entities,
            "freshness": [(written - a).total_seconds() for a in arrived if a is not None]}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _inputs(cfg: Config) -> list[str]:
    return [*(["kafka:" + kafka_topic.topic_of(SOURCE, cfg.sources[SOURCE])] if from_kafka(cfg) else []), *SILVER]


def _outputs(cfg: Config) -> dict[str, list[str]]:
    online = {f"online:{name}": _inputs(cfg) for name in cfg.features.views}
    return {**online, SEEN: _inputs(cfg)[:1]} if from_kafka(cfg) else online


@job(name=JOB,
     summary="Structured Streaming: keep the online store's features current from new transactions (Kafka or silver).",
     inputs=_inputs,
     outputs=_outputs,
     options=[option("--continuous", is_flag=True,
                     help="keep running (a micro-batch every features.stream_trigger_seconds) until stopped; "
                          "default: process what has arrived, then stop")],
     skip_unchanged=False,  # the stream's checkpoint knows what it has read
     busy="updating the online store")
def stream_online(run: JobRun, args) -> None:
    """Update the online store from new transactions, exactly as the batch path would."""
    _stream(run, args)


def _source(spark: SparkSession, cfg: Config) -> tuple[DataFrame, str]:
    if from_kafka(cfg):
        src = cfg.sources[SOURCE]
        topic = kafka_topic.topic_of(SOURCE, src)
        kafka_topic.end_offsets(cfg, topic)  # a clear error when the broker or the topic is missing
        return kafka_topic.read_topic(spark, cfg, SOURCE, src), f"Kafka topic {topic}"
    ref = cfg.table("silver.transactions")
    if current_version(spark, ref) is None:
        raise TableNotFound("silver.transactions does not exist yet: the online stream follows it",
                            hint="`tidewater run ingest_bronze` and `tidewater run refine_silver` first "
                                 "(or read transactions from Kafka: --env kafka)")
    # skipChangeCommits: an erasure's DELETE (governance) brings no new rows; without it the stream stops there.
    return spark.readStream.format("delta").option("skipChangeCommits", "true").load(ref.path), "silver.transactions"


def _wait_for_silver(spark: SparkSession, cfg: Config, kafka: bool, stop: dict) -> None:
    """A continuous stream over silver started before the first refine (`services start` before the
    demo) waits for silver.transactions instead of failing; it counts as running meanwhile."""
    ref = cfg.table("silver.transactions")
    if kafka or current_version(spark, ref) is not None:
        return
    progress(f"{JOB}: waiting for silver.transactions (the pipeline's first refine_silver)")
    while not stop["requested"] and current_version(spark, ref) is None:
        write_status(cfg, state="running", waiting_for="silver.transactions")
        time.sleep(cfg.features.stream_trigger_seconds)


def _stream(run: JobRun, args) -> None:
    spark, cfg = run.spark, run.cfg
    store = feature_store(cfg)
    kafka = from_kafka(cfg)
    for name in SILVER:
        run.uses(name)
    counts = {"batches": 0, "rows": 0, "entities": 0}
    last: dict = {}  # the latest micro-batch that had rows: its id, size and freshness
    silver = SilverCache(spark, cfg)
    recent: list[float] = []

    def each_batch(df: DataFrame, batch_id: int) -> None:
        rows = clean_messages(cfg, df) if kafka else df
        done = update_online(spark, cfg, store, rows, in_silver=not kafka, silver=silver)
        counts["batches"] += 1
        counts["rows"] += done["rows"]
        counts["entities"] += done["entities"]
        recent[:] = (recent + done["freshness"])[-10_000:]
        p50, p99 = percentile(done["freshness"], 0.5), percentile(done["freshness"], 0.99)
        if done["rows"]:
            last.update(last_batch_id=batch_id, last_batch_rows=done["rows"], freshness_p50_s=p50, freshness_p99_s=p99)
        write_status(cfg, state="running", **last, **counts)
        if done["rows"]:
            progress(f"{run.job}: batch {batch_id}: {done['rows']} transactions -> {done['entities']} online rows "
                     f"(arrival to online p50 {p50:.2f} s, p99 {p99:.2f} s)")

    stop = {"requested": False}
    if args.continuous:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
        _wait_for_silver(spark, cfg, kafka, stop)
        if stop["requested"]:
            write_status(cfg, state="stopped", **counts)
            return
    source, described = _source(spark, cfg)
    if kafka:
        run.writing(SEEN)
        forget_refined(spark, cfg)
    checkpoint = cfg.checkpoint_dir(run.job, "kafka" if kafka else "silver")
    writer = source.writeStream.queryName(run.job).foreachBatch(each_batch).option("checkpointLocation", str(checkpoint))
    if args.continuous:
        query = writer.trigger(processingTime=f"{cfg.features.stream_trigger_seconds} seconds").start()
        write_status(cfg, state="running", **counts)
        progress(f"{run.job}: streaming {described} -> the {cfg.features.online_store} online store every "
                 f"{cfg.features.stream_trigger_seconds:g} s; stop with Ctrl-C or `tidewater services stop features`")
        try:
            while query.isActive and not stop["requested"]:
                query.awaitTermination(1)
                write_status(cfg, state="running", **last, **counts)
        except KeyboardInterrupt:
            pass
        query.stop()
    else:
        writer.trigger(availableNow=True).start().awaitTermination()
    write_status(cfg, state="stopped", freshness_p50_s=percentile(recent, 0.5),
                 freshness_p99_s=percentile(recent, 0.99), **counts)
    for name in cfg.features.views:
        run.wrote_asset(f"online:{name}", run.inputs["silver.transactions"])
    if kafka:
        run.wrote(SEEN)
    for metric in ("batches", "rows", "entities"):
        run.count(metric, counts[metric])
    progress(f"{run.job}: {counts['rows']} new transactions from {described} in {counts['batches']} micro-batches "
             f"-> {counts['entities']} online rows")
