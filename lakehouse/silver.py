"""Silver: typed, deduplicated, PII-safe tables, fed incrementally from bronze.

Each entity reads the bronze rows its checkpoint has not committed, in batches taken from bronze's
Delta log (lakehouse.delta_increments), so a run only reads rows it has not seen and a killed run
replays its unfinished batch. Every batch is written idempotently: silver by MERGE on the business
key, quarantine with Delta's (txnAppId, txnVersion) so a replayed batch is not appended twice.
Bronze rows are conserved: silver inserts + quarantined + duplicates = bronze rows read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid
from pathlib import Path
from typing import Callable, Iterator

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.catalog import delta_exists
from lakehouse.config import Config, TableRef
from lakehouse.console import progress
from lakehouse.delta_increments import DeltaIncrements
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.pii import FINGERPRINT_PROPERTY, check_table_key, checked_key, pii_token
from lakehouse.gates import QualityGate, SchemaScreen, prepare_quality_gate, quality_gate
from lakehouse.quarantine import append_quarantine
from lakehouse.refine import (CUSTOMER_RULES, LABEL_RULES, MERCHANT_RULES, TRANSACTION_RULES,
                              EntityRules, classify, refused, usable, with_amount_eur)
from lakehouse.retry import retry_conflicts
from lakehouse.tables import commit_metrics, create_if_missing, current_version, table_properties
from lakehouse.threads import side_by_side

JOB = "refine_silver"
SCD2_ATTRIBUTES = ("email_hash", "card_hash", "segment", "city", "country")


# Up to this many keys arriving more than once in a batch are broadcast to pick out their rows.
REPEATED_KEYS_BROADCAST = 200_000


def _latest_per_key(df: DataFrame, key: list[str], order: list) -> DataFrame:
    """The first row per key in `order`.

    Most keys arrive once. The keys that repeat are found from the key columns alone (a small
    shuffle), and only their rows are ranked; ranking every row would shuffle and sort the whole batch
    to drop a handful. Where many keys repeat, every row is ranked."""
    def first_per_key(rows: DataFrame) -> DataFrame:
        w = Window.partitionBy(*key).orderBy(*order)
        return rows.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")

    repeated = (df.groupBy(*key).count().where(F.col("count") > 1)
                .select(*[F.col(k).alias(f"_repeated_{i}") for i, k in enumerate(key)]).localCheckpoint())
    n = repeated.count()
    if n == 0:
        return df
    if n > REPEATED_KEYS_BROADCAST:
        return first_per_key(df)
    match = functools.reduce(lambda a, b: a & b, [F.col(k).eqNullSafe(F.col(f"_repeated_{i}")) for i, k in enumerate(key)])
    once = df.join(F.broadcast(repeated), match, "left_anti")
    return once.unionByName(first_per_key(df.join(F.broadcast(repeated), match, "left_semi")))


def _first_load(spark: SparkSession, ref: TableRef, rows: DataFrame, properties: dict[str, str] | None) -> bool:
    """Where the table is missing, create it and append `rows` (True): into a table made empty a moment
    ago, a keyed MERGE inserts every row, so an append does it without the join."""
    if not create_if_missing(spark, ref.path, rows.schema, properties):
        return False
    rows.write.format("delta").mode("append").save(ref.path)
    return True


def _key_range(rows: DataFrame, key: str) -> Column:
    """`t.key` within the batch's smallest and largest key: every row the batch can match is, and
    Delta skips the target files whose key statistics lie outside (most of them, where keys grow
    with time as transaction ids do). Read from the batch as it came: dropping repeats changes no bound."""
    lo, hi = rows.agg(F.min(key), F.max(key)).first()
    return F.col(f"t.{key}").between(F.lit(lo), F.lit(hi))


def merge_insert_new(spark: SparkSession, ref: TableRef, rows: DataFrame, key: str,
                     properties: dict[str, str] | None = None) -> None:
    """Insert rows whose key silver does not hold yet (first arrival wins)."""
    latest = _latest_per_key(rows, [key], [F.col("_ingested_at"), F.col("_source_file")])
    if _first_load(spark, ref, latest, properties):
        return
    match = (F.col(f"t.{key}") == F.col(f"s.{key}")) & _key_range(rows, key)
    DeltaTable.forPath(spark, ref.path).alias("t").merge(latest.alias("s"), match).whenNotMatchedInsertAll().execute()


def merge_latest(spark: SparkSession, ref: TableRef, rows: DataFrame, key: str, ts: str,
                 properties: dict[str, str] | None = None) -> None:
    """Upsert the newest record per key (type 1: the latest `ts` wins, older arrivals are ignored)."""
    rows = _latest_per_key(rows, [key], [F.col(ts).desc(), F.col("_ingested_at").desc()])
    if _first_load(spark, ref, rows, properties):
        return
    (DeltaTable.forPath(spark, ref.path).alias("t")
     .merge(rows.alias("s"), f"t.{key} = s.{key}")
     .whenMatchedUpdateAll(condition=f"s.{ts} > t.{ts}")
     .whenNotMatchedInsertAll().execute())


def scd2_history(existing: DataFrame | None, incoming: DataFrame, key: str, ts: str,
                 attributes: tuple[str, ...]) -> DataFrame:
    """Rebuild the type-2 history of the incoming keys: one row per change, valid_from/valid_to.

    A record identical to the version before it is no change and adds no row; a late record is
    slotted into place and the neighbouring validity windows are recomputed.
    """
    change = F.sha2(F.concat_ws("|", *[F.coalesce(F.col(a).cast("string"), F.lit("\0")) for a in attributes]), 256)
    keep = [key, *attributes, "_batch_id", "_ingested_at"]
    new = incoming.select(*keep, F.col(ts).alias("valid_from"), F.lit(1).alias("_new"))
    if existing is not None:
        old = existing.join(incoming.select(key).distinct(), key).select(*keep, "valid_from", F.lit(0).alias("_new"))
        new = old.unionByName(new)
    both = _latest_per_key(new, [key, "valid_from"], [F.col("_new"), F.col("_ingested_at")])
    w = Window.partitionBy(key).orderBy("valid_from")
    both = both.withColumn("_change", change).withColumn("_prev", F.lag("_change").over(w))
    both = both.where((F.col("_new") == 0) | F.col("_prev").isNull() | (F.col("_change") != F.col("_prev")))
    return (both.withColumn("valid_to", F.lead("valid_from").over(w))
            .withColumn("is_current", F.col("valid_to").isNull())
            .drop("_change", "_prev", "_new"))


def merge_scd2(spark: SparkSession, ref: TableRef, rows: DataFrame, key: str, ts: str,
               properties: dict[str, str] | None = None) -> None:
    rows = _latest_per_key(rows, [key, ts], [F.col("_ingested_at")])
    existing = spark.read.format("delta").load(ref.path) if delta_exists(ref.path) else None
    # The history reads the target it is about to merge into: materialize it first.
    history = scd2_history(existing, rows, key, ts, SCD2_ATTRIBUTES).localCheckpoint()
    if _first_load(spark, ref, history, properties):
        return
    (DeltaTable.forPath(spark, ref.path).alias("t")
     .merge(history.alias("s"), f"t.{key} = s.{key} AND t.valid_from = s.valid_from")
     .whenMatchedUpdate(condition="NOT (t.valid_to <=> s.valid_to)",
                        set={"valid_to": "s.valid_to", "is_current": "s.is_current"})
     .whenNotMatchedInsertAll().execute())


@contextlib.contextmanager
def _schema_evolution(spark: SparkSession, enabled: bool) -> Iterator[None]:
    """Let one MERGE add columns (schema_policy `evolve`); everything else keeps the table's schema."""
    key = "spark.databricks.delta.schema.autoMerge.enabled"
    if not enabled:
        yield
        return
    previous = spark.conf.get(key, "false")
    spark.conf.set(key, "true")
    try:
        yield
    finally:
        spark.conf.set(key, previous)


def _checkpoint_token(checkpoint: Path) -> str:
    """A stable id per checkpoint: Delta's idempotent-append key must change if it is reset."""
    token_file = checkpoint.parent / f"{checkpoint.name}.token"
    if not (checkpoint.exists() and token_file.exists()):
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(uuid.uuid4().hex)
    return token_file.read_text().strip()


class EntityRefiner:
    """Refine one entity from its bronze table into silver and quarantine."""

    def __init__(self, spark: SparkSession, cfg: Config, run: JobRun, entity: str, rules: EntityRules,
                 write_valid: Callable[..., None], derive: Callable[[DataFrame], DataFrame] = lambda df: df,
                 key_fingerprint: str | None = None):
        self.spark, self.cfg, self.run, self.entity = spark, cfg, run, entity
        self.rules, self.write_valid, self.derive = rules, write_valid, derive
        self.bronze = cfg.sources[entity].bronze
        self.silver = cfg.table(f"silver.{entity}")
        self.quarantine = cfg.table(f"quarantine.{entity}")  # where append_quarantine writes
        # Tables holding tokens record the key that hashed them (checked before anything is written).
        self.properties = {FINGERPRINT_PROPERTY: key_fingerprint} if rules.hashed and key_fingerprint else {}
        if rules.indexed:
            self.properties["delta.dataSkippingStatsColumns"] = ",".join(rules.indexed)
        self.checkpoint = cfg.checkpoint_dir(JOB, entity)
        self.app_id = f"{JOB}:{entity}:{_checkpoint_token(self.checkpoint)}"

    def process_rows(self, rows: DataFrame, batch_id: int, settle: Callable[[DataFrame], None]) -> None:
        """Refine rows shaped like bronze from elsewhere than bronze (quarantine replay): silver is written
        here, and then `settle` is given every refused row to write in the same commit as its own marks."""
        self._process(rows, batch_id, settle=settle)

    def _process(self, batch: DataFrame, batch_id: int, settle: Callable[[DataFrame], None] | None = None) -> None:
        """Refine one batch of bronze rows: shape screen, parse, gate, quarantine, MERGE, record.

        The batch is parsed once: every row, with its silver columns (derived ones included) and its
        reason, is cached, and the counts, the checks and both writes read that cache."""
        gate, run_id, rules = quality_gate(), self.run.run_id, self.rules
        max_chars = self.cfg.sources[self.entity].max_record_chars
        hash_pii = lambda c: pii_token(c, self.cfg)  # noqa: E731
        json = rules.format == "json"
        parsed = classify(batch, rules, hash_pii, max_chars, shape=json)
        classified = self._cached(gate, self.derive(parsed))
        try:
            screen = (gate.screen_schema(self.spark, self.cfg, self.silver.name, classified, fields=rules.fields,
                                         types=rules.types, job=self.run.job, run_id=run_id,
                                         batch_id=str(batch_id), payload=parsed)
                      if json else SchemaScreen(passed=classified, quarantined=None))
            if screen.new_fields:  # evolve: parse the batch again with the fields it brought
                rules = dataclasses.replace(rules, fields=rules.fields + screen.new_fields)
                classified.unpersist()
                classified = self._cached(gate, self.derive(classify(batch, rules, hash_pii, max_chars)))
                screen.passed = classified
            structural = {r["reason"]: r["count"] for r in screen.passed.groupBy("reason").count().collect()}
            rejected = refused(screen.passed)
            if screen.quarantined is not None:
                rejected = rejected.unionByName(screen.quarantined)
                for r in screen.quarantined.groupBy("reason").count().collect():
                    structural[r["reason"]] = structural.get(r["reason"], 0) + r["count"]
            n_bronze = sum(structural.values())
            structural.pop(None, None)
            valid = usable(screen.passed)
            # The gate may stop the job here: nothing of this batch has been written yet.
            verdict = gate.check(self.spark, self.cfg, self.silver.name, valid, job=self.run.job,
                                 run_id=run_id, batch=str(batch_id), prior_rejections=structural)
            verdict.results = screen.results + verdict.results
            passed = verdict.passed.drop("raw")
            n_valid = passed.count()
            refused_rows = rejected if verdict.quarantined is None else rejected.unionByName(verdict.quarantined)
            n_rejected = n_bronze - n_valid
            before = current_version(self.spark, self.silver)
            if n_valid:
                with _schema_evolution(self.spark, enabled=bool(screen.new_fields)):
                    retry_conflicts(lambda: self.write_valid(self.spark, self.silver, passed, properties=self.properties),
                                    self.silver.name)
            after = current_version(self.spark, self.silver)
            if settle is not None:
                retry_conflicts(lambda: settle(refused_rows), self.quarantine.name)
            elif n_rejected:
                append_quarantine(self.spark, self.cfg, self.silver.name, refused_rows, run_id=run_id,
                                  source_table=self.bronze, txn=(self.app_id, batch_id))
            gate.record(self.spark, self.cfg, verdict, after)
            m = commit_metrics(self.spark, self.silver, after) if after is not None and after != before else {}
            # A MERGE counts inserted rows; a first load (an append) counts the rows it wrote.
            inserted = m.get("numTargetRowsInserted", m.get("numOutputRows", 0))
            updated = m.get("numTargetRowsUpdated", 0)
            for metric, n in ((f"{self.entity}_bronze_rows", n_bronze),
                              (f"{self.entity}_quarantined", n_rejected),
                              (f"{self.entity}_inserted", inserted),
                              (f"{self.entity}_updated", updated),
                              (f"{self.entity}_unchanged", max(n_valid - inserted - updated, 0))):
                self.run.count(metric, n)
        finally:
            classified.unpersist()

    def _cached(self, gate: QualityGate, classified: DataFrame) -> DataFrame:
        """The parsed batch, cached once for the screen, the counts, the gate and both writes.

        Raw lines are most of what such a cache would hold, and only quarantine keeps them: rows
        already refused keep theirs, and so do rows the gate may quarantine; the others drop it here
        (a file the schema screen quarantines whole is read again from the batch)."""
        keep = F.col("reason").isNotNull() | gate.may_quarantine(self.cfg, self.silver.name, classified.columns)
        return classified.withColumn("raw", F.when(keep, F.col("raw"))).persist()

    def check_key(self) -> None:
        """A table hashed under another key stops the run (tables from before keys were recorded get stamped)."""
        fingerprint = self.properties.get(FINGERPRINT_PROPERTY)
        if fingerprint is None or not delta_exists(self.silver.path):
            return
        recorded = table_properties(self.spark, self.silver.path).get(FINGERPRINT_PROPERTY)
        check_table_key(self.silver.name, recorded, fingerprint, self.cfg.secrets.pii_key_env)
        if recorded is None:
            self.spark.sql(f"ALTER TABLE delta.`{self.silver.path}` SET TBLPROPERTIES "
                           f"('{FINGERPRINT_PROPERTY}' = '{fingerprint}')")

    def run_increments(self) -> None:
        """Refine the bronze rows this entity's checkpoint has not committed, then record and report them."""
        version = self.run.uses(self.bronze)
        if version is None:
            progress(f"{JOB}: {self.entity}: {self.bronze} is empty, nothing to refine")
            return
        self.run.writing(self.silver.name)
        self.run.writing(self.quarantine.name)
        increments = DeltaIncrements(self.spark, self.cfg.table(self.bronze).path, self.checkpoint,
                                     self.cfg.sources[self.entity].refine_batch_bytes, upto=version)
        for batch in increments.batches():
            increments.begin(batch)
            if batch.files:
                self._process(increments.read(batch), batch.id)
            increments.commit(batch)
        self.run.wrote(self.silver.name)
        self.run.wrote(self.quarantine.name)
        m = self.run.metrics
        progress(f"{JOB}: {self.entity}: read {m.get(f'{self.entity}_bronze_rows', 0)} bronze rows, "
                 f"inserted {m.get(f'{self.entity}_inserted', 0)}, updated {m.get(f'{self.entity}_updated', 0)}, "
                 f"quarantined {m.get(f'{self.entity}_quarantined', 0)}, "
                 f"duplicates/unchanged {m.get(f'{self.entity}_unchanged', 0)}")


def refiners(spark: SparkSession, cfg: Config, run: JobRun) -> list[EntityRefiner]:
    """One refiner per configured entity, in the order they run."""
    rates = cfg.currencies
    entities = [
        ("merchants", MERCHANT_RULES, lambda s, ref, df, **kw: merge_latest(s, ref, df, "merchant_id", "updated_at", **kw),
         None),
        ("customers", CUSTOMER_RULES, lambda s, ref, df, **kw: merge_scd2(s, ref, df, "customer_id", "updated_at", **kw),
         None),
        ("transactions", TRANSACTION_RULES, lambda s, ref, df, **kw: merge_insert_new(s, ref, df, "txn_id", **kw),
         lambda df: with_amount_eur(df, rates)),
        ("labels", LABEL_RULES, lambda s, ref, df, **kw: merge_latest(s, ref, df, "txn_id", "label_time", **kw), None),
    ]
    entities = [e for e in entities if e[0] in cfg.sources]
    fingerprint = checked_key(spark, cfg) if any(rules.hashed for _, rules, _, _ in entities) else None
    made = [EntityRefiner(spark, cfg, run, entity, rules, write, derive or (lambda df: df), fingerprint)
            for entity, rules, write, derive in entities]
    for refiner in made:
        refiner.check_key()
    return made


def _outputs(cfg: Config) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for entity, src in cfg.sources.items():
        out[f"silver.{entity}"] = (src.bronze,)
        out[f"quarantine.{entity}"] = (src.bronze,)
    out["gold.quality_results"] = tuple(src.bronze for src in cfg.sources.values())
    return out


@job(name="refine_silver",
     summary="Parse, type, deduplicate and PII-hash new bronze rows into silver; quarantine the rest.",
     inputs=lambda cfg: [src.bronze for src in cfg.sources.values()],
     outputs=_outputs,
     skip_unchanged=False)  # each entity's checkpoint already reads only new bronze rows
def refine_silver(run: JobRun, args) -> None:
    """Refine every entity's new bronze rows into silver and quarantine."""
    prepare_quality_gate()
    run.writing("gold.quality_results")
    made = refiners(run.spark, run.cfg, run)
    gate = quality_gate()
    checked = [r for r in made if gate.checks(run.cfg, r.silver.name)]
    # Entities the gate does not check are refined side by side: each is mostly a cold JVM's fixed
    # cost (small queries, commits), which overlaps well on two cores. Checked ones follow one at a
    # time (GE's context is one per process). Refined beside the checked ones, the unchecked ones
    # saved nothing measurable at 1M: the transactions' parse and the JIT already fill both cores.
    side_by_side([r.run_increments for r in made if r not in checked], JOB)
    for refiner in checked:
        refiner.run_increments()
    run.wrote("gold.quality_results")
