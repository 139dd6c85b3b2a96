"""One typed configuration: conf/base.yaml + conf/<env>.yaml + overrides, validated once."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lakehouse.errors import ConfigError, TableNotFound

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CONF_DIR = PROJECT_DIR / "conf"
ENV_VAR_ENV = "TIDEWATER_ENV"
ENV_VAR_ROOT = "TIDEWATER_ROOT"
ENV_VAR_MASTER = "TIDEWATER_SPARK_MASTER"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConf(_Strict):
    root: str


class SparkConf(_Strict):
    app_name: str = "tidewater"
    master: str = "local[*]"
    shuffle_partitions: int = Field(8, ge=1)
    jars_dir: str = "jars"
    # in-memory: each session names the configured tables itself (lakehouse.catalog); hive: the shared
    # metastore that `tidewater services start metastore` runs on PostgreSQL, seen by every process.
    catalog: Literal["in-memory", "hive"] = "in-memory"
    # Flags of the driver's JVM, after the project's logging setting (in local mode it runs every task).
    driver_java_options: list[str] = []
    # HotSpot compiler directives for the driver (a file, relative to the project): which code its
    # optimizing compiler (C2) leaves to the quick one (C1).
    jit_directives: str | None = None
    conf: dict[str, str] = {}


class SecretsConf(_Strict):
    pii_key_env: str = "TIDEWATER_PII_KEY"
    allow_demo_key: bool = False


class SourceConf(_Strict):
    format: Literal["json", "csv"]
    file_glob: str
    bronze: str
    header: str | None = None
    # A longer line is quarantined unparsed (reason oversized_record): it never reaches a parser or silver.
    max_record_chars: int = Field(1_048_576, ge=1)
    # files: arrival batches in the landing folder. kafka: the same lines as messages on `topic`
    # (`tidewater generate --to-kafka` publishes them), keyed by the JSON field `key`.
    kind: Literal["files", "kafka"] = "files"
    topic: str | None = None
    key: str | None = None
    max_messages_per_batch: int | None = Field(None, ge=1)  # Kafka messages per micro-batch (all: None)
    # Bronze bytes (Parquet on disk) silver refines per micro-batch: a batch is parsed and cached whole,
    # so this bounds the driver's memory however much bronze waits (at least one file per batch).
    # 256 MiB is about 2.5M transactions, whose cache takes about 1 GiB of a 6g driver.
    refine_batch_bytes: int = Field(256 * 1024 * 1024, ge=1)


class GeneratorConf(_Strict):
    seed: int = 42
    rows: int = Field(20000, ge=100)
    days: int = Field(14, ge=1)
    start_date: str = "2026-01-01"
    defect_rate: float = Field(0.02, ge=0.0, le=0.5)
    fraud_rate: float = Field(0.02, ge=0.0, le=0.5)
    drift_from_day: int | None = None
    warmup_days: int = Field(0, ge=0)


class PipelineConf(_Strict):
    stages: list[str] = []
    # The demo holds back the last days' batches, then lands them as new arrivals of these many days
    # each, in order, running arrival_stages after each.
    arrivals: list[int] = []
    arrival_stages: list[str] = []

    @field_validator("arrivals")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("each arrival lands at least one day")
        return v


ROW_CHECKS = {"not_null", "between", "in_set", "regex", "unique"}  # Great Expectations; the rest run in Soda


class CheckConf(_Strict):
    """One declared check: a rule over a column or the dataset, and what to do when it fails.

    Row-level rules run in Great Expectations and may quarantine the failing rows; dataset-level
    rules run in a Soda contract and can only warn or fail.
    """

    name: str
    check: Literal["not_null", "between", "in_set", "regex", "unique", "row_count", "missing_percent",
                   "duplicate_percent", "invalid_percent", "freshness", "schema"]
    policy: Literal["warn", "quarantine", "fail"]
    column: str | None = None
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    pattern: str | None = None
    columns: list[str] | None = None  # schema: the columns the table must have
    values_from: Literal["currencies"] | None = None  # in_set: take values from that config section

    @property
    def engine(self) -> str:
        return "great_expectations" if self.check in ROW_CHECKS else "soda"

    @model_validator(mode="after")
    def _consistent(self) -> "CheckConf":
        needs_column = self.check not in ("row_count", "schema")
        if needs_column and not self.column:
            raise ValueError(f"check {self.name!r} ({self.check}) needs a column")
        if self.check in ("in_set", "invalid_percent") and not self.values:
            raise ValueError(f"check {self.name!r} ({self.check}) needs values")
        if self.check == "regex" and not self.pattern:
            raise ValueError(f"check {self.name!r} (regex) needs a pattern")
        if self.check == "schema" and not self.columns:
            raise ValueError(f"check {self.name!r} (schema) needs columns")
        if self.check == "between" and self.min is None and self.max is None:
            raise ValueError(f"check {self.name!r} (between) needs min and/or max")
        if self.policy == "quarantine" and self.check not in ROW_CHECKS - {"unique"}:
            raise ValueError(f"check {self.name!r}: only row-level checks can quarantine rows; "
                             f"use warn or fail for {self.check}")
        return self


class TableQualityConf(_Strict):
    # What a change in the source's shape does: evolve the table, quarantine the batch, or fail.
    schema_policy: Literal["evolve", "quarantine_batch", "fail"] = "quarantine_batch"
    checks: list[CheckConf] = []

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, v: list[CheckConf]) -> list[CheckConf]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique, repeated: {', '.join(dupes)}")
        return v


class FeatureConf(_Strict):
    """One feature: an aggregation of a source column over a trailing time window."""

    name: str
    agg: Literal["count", "sum", "avg", "max", "count_distinct"]
    window: str  # 1h, 24h, 7d, 30d
    column: str | None = None  # None only for count
    dtype: Literal["int64", "float64"] = "float64"
    description: str | None = None  # words for reason codes; default: made from agg, column and window

    @property
    def window_seconds(self) -> int:
        unit = self.window[-1]
        return int(self.window[:-1]) * {"h": 3600, "d": 86400}[unit]

    @model_validator(mode="after")
    def _consistent(self) -> "FeatureConf":
        if self.window[-1:] not in ("h", "d") or not self.window[:-1].isdigit():
            raise ValueError(f"feature {self.name!r}: window must look like 24h or 30d")
        if self.agg != "count" and not self.column:
            raise ValueError(f"feature {self.name!r}: {self.agg} needs a column")
        return self


class FeatureViewConf(_Strict):
    """Features of one entity, computed from one source table as of each event time."""

    entity: str
    key: str
    source: str
    timestamp: str = "event_time"
    table: str  # offline Delta table, e.g. features.customer_features
    ttl_days: int = Field(90, ge=1)
    features: list[FeatureConf]


class FeaturesConf(_Strict):
    project: str = "tidewater"
    views: dict[str, FeatureViewConf] = {}
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "127.0.0.1:6379"
    # A Redis that stops answering fails a lookup or a materialization after this long, never hangs it.
    redis_timeout_seconds: float = Field(5.0, gt=0)
    # Training and scoring use rows this many days after the history starts (None: the longest window).
    mature_after_days: int | None = Field(None, ge=0)
    # stream_online --continuous (`tidewater services start features`): a micro-batch this often.
    stream_trigger_seconds: float = Field(1.0, gt=0)

    @property
    def maturity_days(self) -> int:
        if self.mature_after_days is not None:
            return self.mature_after_days
        longest = max((f.window_seconds for v in self.views.values() for f in v.features), default=0)
        return -(-longest // 86400)


RegistryMetric = Literal["auc_pr", "recall_at_precision", "precision", "recall", "f1"]


class MetricBound(_Strict):
    """One metric's bar for a challenger, as MLflow's MetricThreshold expresses it."""

    threshold: float | None = None  # absolute: the challenger's value must reach it
    min_absolute_change: float | None = Field(None, gt=0.0)  # over the champion's value
    min_relative_change: float | None = Field(None, gt=0.0, le=1.0)  # share of the champion's value
    greater_is_better: bool = True

    @model_validator(mode="after")
    def _some_bar(self) -> "MetricBound":
        if self.threshold is None and self.min_absolute_change is None and self.min_relative_change is None:
            raise ValueError("a metric bound needs threshold, min_absolute_change or min_relative_change")
        return self


class PromotionConf(_Strict):
    """How a challenger earns the champion alias: bars on its held-out, time-later slice."""

    metric: RegistryMetric = "auc_pr"  # the headline metric a decision reports
    # Every bound must hold (absolute ones also for the first model; change ones against the champion).
    bounds: dict[RegistryMetric, MetricBound] = {"auc_pr": MetricBound(threshold=0.1, min_absolute_change=0.001)}
    precision_target: float = Field(0.8, gt=0.0, le=1.0)  # for recall_at_precision

    @model_validator(mode="after")
    def _headline_bounded(self) -> "PromotionConf":
        if self.metric not in self.bounds:
            raise ValueError(f"promotion.metric {self.metric!r} needs an entry in promotion.bounds")
        return self


class DecisionThresholdConf(_Strict):
    """How validation picks a model version's own decision threshold (scoring uses that one).

    `alert_budget`: flag at most `alert_share` of the legitimate rows of the validation slice (a
    false-alert budget, independent of how many fraud labels the slice holds). `precision`: the lowest
    threshold whose precision on the validation slice reaches `precision`.
    """

    rule: Literal["precision", "alert_budget"] = "alert_budget"
    precision: float = Field(0.5, gt=0.0, le=1.0)
    alert_share: float = Field(0.02, gt=0.0, lt=1.0)


FairnessMetric = Literal["selection_rate", "false_positive_rate", "true_positive_rate"]


class FairnessConf(_Strict):
    """The fairness gate at validation: group metrics on the held-out slice at the version's own threshold.

    Each slice is a column of the held-out rows; one the training set lacks is taken from
    `attributes_table` (an SCD2 table: the record valid at each row's event time, by `key`). A gap
    (largest minus smallest group value) above its `max_gap` blocks promotion; groups with fewer
    than `min_group_rows` rows are reported but not gated.
    """

    slices: list[str] = ["segment", "country"]
    max_gap: dict[FairnessMetric, float] = {"selection_rate": 0.1, "false_positive_rate": 0.05}
    min_group_rows: int = Field(100, ge=1)
    attributes_table: str = "silver.customers"
    key: str = "customer_id"

    @field_validator("max_gap")
    @classmethod
    def _gaps_are_shares(cls, v: dict[str, float]) -> dict[str, float]:
        for metric, gap in v.items():
            if not 0.0 <= gap <= 1.0:
                raise ValueError(f"max_gap.{metric} is a difference of rates: between 0 and 1, not {gap}")
        return v


class ModelCardConf(_Strict):
    """What a model card says about use that no metric can: who it is for, what it must not be used for."""

    intended_use: str = "Flag card transactions for fraud review."
    users: list[str] = ["fraud analysts"]
    out_of_scope: list[str] = []
    limitations: list[str] = []


class TrainingConf(_Strict):
    """The fraud model, its data, its engine and its registry, in one place."""

    engine: Literal["horovod", "horovodrun", "torch_distributor"] = "horovod"
    num_proc: int = Field(2, ge=1)
    python: str = ".venv-train/bin/python"  # the training environment (relative to the project)
    driver_memory: str = "2g"
    nics: list[str] = []  # Horovod rendezvous interfaces (lo for local runs)
    use_gpu: bool = True  # when CUDA is present
    training_set: str = "features.training_set"
    label: str = "is_fraud"
    timestamp: str = "event_time"
    id_column: str = "txn_id"
    numeric_features: list[str]
    categorical_features: list[str] = []
    validation_share: float = Field(0.15, gt=0.0, lt=0.5)
    holdout_share: float = Field(0.15, gt=0.0, lt=0.5)
    seed: int = 7
    max_epochs: int = Field(15, ge=1)
    patience: int = Field(3, ge=1)
    batch_size: int = Field(256, ge=8)
    learning_rate: float = Field(0.003, gt=0.0)
    hidden_units: list[int] = [64, 32]
    embedding_dim: int = Field(4, ge=1)
    max_categories: int = Field(50, ge=1)
    model_name: str = "fraud_detector"
    experiment: str | None = None  # default: the project name
    tracking_uri: str | None = None  # default: sqlite under <root>/mlflow; env MLFLOW_TRACKING_URI wins
    promotion: PromotionConf = PromotionConf()
    decision_threshold: DecisionThresholdConf = DecisionThresholdConf()
    fairness: FairnessConf = FairnessConf()
    model_card: ModelCardConf = ModelCardConf()


class ScoringConf(_Strict):
    """Batch and streaming scoring with a registered model alias."""

    alias: str = "champion"
    frame_backend: Literal["auto", "pandas", "cudf"] = "auto"  # per-batch preprocessing
    stream_trigger_seconds: int = Field(5, ge=1)
    stream_max_files_per_trigger: int = Field(50, ge=1)
    reasons: int = Field(3, ge=0)  # reason codes per decision: API answers, batch explanations of flagged rows


class DriftConf(_Strict):
    """The table-to-table drift job: reference = the champion's training set version."""

    window: str = "1d"  # current windows, e.g. 1d or 12h
    slice_column: str | None = None  # e.g. country: metrics per slice value as well as overall
    bins: int = Field(10, ge=2)  # quantile bins of the reference for PSI / Jensen-Shannon
    grid: int = Field(400, ge=20)  # CDF points for Kolmogorov-Smirnov and Wasserstein
    min_rows: int = Field(50, ge=1)  # windows (or slices) with fewer rows are not judged
    numeric_features: list[str] | None = None  # default: the model's numeric inputs
    categorical_features: list[str] | None = None
    # metric -> threshold: drifted when value > threshold (p-values: when value < threshold).
    # A metric missing here is recorded but does not judge drift.
    thresholds: dict[str, float] = {"psi": 0.2, "js_distance": 0.2, "null_rate_delta": 0.1}
    # Scoring inputs to compare: batch, streaming and the API's decisions (one row per transaction: the
    # first table that holds it wins).
    current_tables: list[str] = ["gold.predictions", "gold.predictions_stream", "gold.decisions_online"]

    @property
    def window_seconds(self) -> int:
        return int(self.window[:-1]) * {"h": 3600, "d": 86400}[self.window[-1]]

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        if v[-1:] not in ("h", "d") or not v[:-1].isdigit():
            raise ValueError("window must look like 12h or 1d")
        return v


class ReviewConf(_Strict):
    """When live traffic promotes a shadow or canary model, or rolls it back without a human.

    Compared per route on the same window (predictions since the rollout started): the alert rate
    (needs no labels), recall on confirmed fraud (fraud labels arrive first) and precision among
    labelled alerts. Each judges only once it has the evidence below.
    """

    min_rows: int = Field(200, ge=1)  # predictions per route before the alert rate judges
    min_fraud: int = Field(10, ge=1)  # confirmed fraud per route before recall judges
    min_labelled_alerts: int = Field(20, ge=1)  # labelled alerts per route before precision judges
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)  # share of rows it could not score
    max_alert_ratio: float = Field(2.0, gt=1.0)  # its alert rate over the champion's: above it, roll back
    min_recall_ratio: float = Field(0.7, gt=0.0, le=1.0)  # its recall under this share of the champion's: roll back
    min_precision_ratio: float = Field(0.5, gt=0.0, le=1.0)  # its precision under this share of the champion's: roll back
    promote_recall_margin: float = Field(0.0, ge=0.0)  # promote when its recall >= the champion's + this


class DeploymentConf(_Strict):
    """How a validated challenger reaches traffic: at once, in the shadow, or as a canary."""

    strategy: Literal["direct", "shadow", "canary"] = "direct"
    canary_share: float = Field(0.2, gt=0.0, lt=1.0)  # share of route_key values the canary decides for
    route_key: str = "customer_id"  # hashed (stable) to pick the canary's traffic
    review: ReviewConf = ReviewConf()


class ScheduleTrigger(_Strict):
    enabled: bool = True
    max_model_age_hours: float = Field(24 * 7, gt=0)  # retrain when the champion is older than this


class NewLabelsTrigger(_Strict):
    enabled: bool = True
    min_rows: int = Field(5000, ge=1)  # labels not in the champion's training set version


class DriftTrigger(_Strict):
    enabled: bool = True
    min_events: int = Field(1, ge=1)  # unconsumed meta.drift_events windows (overall slice) of the champion


class PerformanceTrigger(_Strict):
    enabled: bool = True
    metric: Literal["precision", "recall", "f1", "auc_pr"] = "recall"
    min_value: float = Field(0.3, ge=0.0, le=1.0)
    windows_below: int = Field(2, ge=1)  # K of ...
    of_last: int = Field(3, ge=1)  # ... the last M windows of gold.model_performance


class ContinuousTrainingConf(_Strict):
    """When `continuous_training` retrains; each trigger on or off. It runs build_training_set -> train
    (validation inside) -> the deployment strategy, and records every decision, "nothing to do" too."""

    schedule: ScheduleTrigger = ScheduleTrigger()
    new_labels: NewLabelsTrigger = NewLabelsTrigger()
    drift: DriftTrigger = DriftTrigger()
    performance: PerformanceTrigger = PerformanceTrigger()


class SparkClusterConf(_Strict):
    master_port: int = 7077
    master_ui_port: int = 8080
    workers: int = Field(2, ge=1)
    worker_cores: int = Field(2, ge=1)  # slots, not CPUs: the demo's session and a training run need 2 each
    worker_memory: str = "3g"


class MetastoreConf(_Strict):
    port: int = 5433  # not 5432: Debian starts its own cluster there
    host: str | None = None  # where clients find it, when not services.host (a Kubernetes Service name, say)
    database: str = "metastore"
    user: str = "tidewater"
    # The metastore's password comes from this environment variable when the service first starts.
    password_env: str = "TIDEWATER_METASTORE_PASSWORD"


class SqlServerConf(_Strict):
    port: int = 10000
    master: str = "local[2]"
    driver_memory: str = "2g"


class PortConf(_Strict):
    port: int


class ScheduleConf(_Strict):
    """A named run of jobs, in order, every `every` (30s, 15m, 6h, 1d)."""

    name: str
    jobs: list[str] = Field(min_length=1)
    every: str

    @field_validator("every")
    @classmethod
    def _interval(cls, v: str) -> str:
        if not re.fullmatch(r"\d+[smhd]", v):
            raise ValueError(f"{v!r} is not an interval like 30s, 15m, 6h or 1d")
        return v

    @property
    def seconds(self) -> int:
        return int(self.every[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.every[-1]]


class ApiConf(_Strict):
    """The scoring API (`tidewater services start api`)."""

    port: int = 8000
    reload_seconds: float = Field(10, gt=0)  # how often it checks whether the champion alias moved
    max_body_bytes: int = Field(65536, ge=1024)  # larger requests get 413
    max_batch: int = Field(500, ge=1)  # transactions per /v1/score/batch request


class SchedulerConf(_Strict):
    """`driver`: process runs each job as a `tidewater run` process of its own (a fresh driver JVM);
    warm runs the jobs one at a time in the scheduler's own Spark session, whose JVM has compiled their
    code already (a day's run at 1M: 73 s -> 22 s, benchmarks/daily.py). On a cluster a warm driver
    holds its executors between runs."""

    schedules: list[ScheduleConf] = []
    driver: Literal["process", "warm"] = "process"


class DriverConf(_Strict):
    """The resident driver (`tidewater services start driver`), which `tidewater run` hands its jobs to:
    before the first, it runs bronze -> silver -> gold on `warm_up_rows` generated transactions of its
    own (0: no warm-up), so that job finds Spark's code compiled."""

    warm_up_rows: int = Field(20000, ge=0)


class KafkaConf(_Strict):
    """The Kafka broker (`tidewater services start kafka`): KRaft, broker and controller in one JVM."""

    port: int = 9092
    controller_port: int = 9093
    partitions: int = Field(2, ge=1)  # of each topic the platform creates
    heap: str = "512m"


class ServicesConf(_Strict):
    """The servers `tidewater services` runs; all bind `host` (loopback unless configured)."""

    host: str = "127.0.0.1"
    start_timeout_seconds: int = Field(180, ge=1)
    spark: SparkClusterConf = SparkClusterConf()
    metastore: MetastoreConf = MetastoreConf()
    sql: SqlServerConf = SqlServerConf()
    mlflow: PortConf = PortConf(port=5000)
    redis: PortConf = PortConf(port=6379)
    api: ApiConf = ApiConf()
    kafka: KafkaConf = KafkaConf()
    scheduler: SchedulerConf = SchedulerConf()
    driver: DriverConf = DriverConf()

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka.port}"


class RoleConf(_Strict):
    """What one role may read: tables by `layer.table` or `layer.*`, and whether it sees PII tokens."""

    read: list[str] = []
    pii: bool = False  # token columns (card_hash, ...) and raw payloads; without it they are masked or denied

    def reads(self, table: str) -> bool:
        layer = table.split(".", 1)[0]
        return any(g in ("*", table, f"{layer}.*") for g in self.read)

    @property
    def restricted(self) -> bool:
        """Whether anything is withheld from the role (every table and PII otherwise)."""
        return not (self.pii and "*" in self.read)


class AccessConf(_Strict):
    """Who may read what on the platform's own surfaces (tidewater sql/tables, notebooks, the scoring API).

    An identity is TIDEWATER_USER, else the OS user; an API caller is the name its token belongs to
    (`tokens_env` holds `name=token,...`). `identities` maps names to roles; others get `default_role`.
    """

    default_role: str = "engineer"
    identities: dict[str, str] = {}
    roles: dict[str, RoleConf] = {"engineer": RoleConf(read=["*"], pii=True)}
    tokens_env: str = "TIDEWATER_API_TOKENS"
    audit_table: str = "meta.audit_log"

    @model_validator(mode="after")
    def _roles_exist(self) -> "AccessConf":
        for name, role in {"default_role": self.default_role, **self.identities}.items():
            if role not in self.roles:
                raise ValueError(f"access: {name} has role {role!r}, which access.roles does not define")
        return self

    def role_of(self, identity: str) -> str:
        return self.identities.get(identity, self.default_role)

    def restricted_identities(self) -> dict[str, str]:
        """Named identities of restricted roles -> their role (the SQL server confines them to its views)."""
        return {name: role for name, role in self.identities.items() if self.roles[role].restricted}


class GovernanceConf(_Strict):
    """Retention per layer, erasure of one data subject, and the PII scan (the governance package)."""

    # layer -> how long a table keeps files it no longer references, and its log: 30d, 12h.
    retention: dict[str, str] = {}
    # The column naming a data subject (`tidewater erase --customer ID`), and the keys of the subject's
    # rows in tables without that column (a label names its transaction, not its customer).
    subject_key: str = "customer_id"
    linked_keys: list[str] = ["txn_id"]
    erasures_table: str = "meta.erasures"
    # Fields that hold person names: no name recognizer works offline here (README: PII scan).
    name_fields: list[str] = ["customer_name"]
    scan_rows: int = Field(5000, ge=1)  # rows the PII scan reads per table

    @field_validator("retention")
    @classmethod
    def _windows(cls, v: dict[str, str]) -> dict[str, str]:
        for layer, window in v.items():
            if not re.fullmatch(r"\d+[hd]", window):
                raise ValueError(f"retention.{layer}: {window!r} is not a window like 30d or 12h")
        return v

    def retention_hours(self, layer: str) -> int | None:
        """The layer's window in hours; None where the layer keeps Delta's defaults."""
        window = self.retention.get(layer)
        return None if window is None else int(window[:-1]) * {"h": 1, "d": 24}[window[-1]]


class TableRef(BaseModel):
    """A configured table: its catalog name and where its Delta files live."""

    name: str
    path: str

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]


class Config(_Strict):
    project: str = "tidewater"
    env: str = "base"
    storage: StorageConf
    spark: SparkConf = SparkConf()
    secrets: SecretsConf = SecretsConf()
    tables: dict[str, list[str]]
    table_paths: dict[str, str] = {}
    sources: dict[str, SourceConf] = {}
    currencies: dict[str, float] = {}
    generator: GeneratorConf = GeneratorConf()
    pipeline: PipelineConf = PipelineConf()
    quality: dict[str, TableQualityConf] = {}
    features: FeaturesConf = FeaturesConf()
    training: TrainingConf | None = None
    scoring: ScoringConf = ScoringConf()
    deployment: DeploymentConf = DeploymentConf()
    continuous_training: ContinuousTrainingConf = ContinuousTrainingConf()
    drift: DriftConf = DriftConf()
    services: ServicesConf = ServicesConf()
    governance: GovernanceConf = GovernanceConf()
    access: AccessConf = AccessConf()

    @model_validator(mode="before")
    @classmethod
    def _resolve_values_from(cls, data: Any) -> Any:
        """`values_from: currencies` keeps one list of currencies for refine and quality alike."""
        for table in (data.get("quality") or {}).values():
            for check in (table or {}).get("checks") or []:
                if isinstance(check, dict) and check.get("values_from") and not check.get("values"):
                    check["values"] = list(data.get(check["values_from"]) or {})
        return data

    @model_validator(mode="after")
    def _quality_names_tables(self) -> "Config":
        for name in self.quality:
            self.table(name)  # raises TableNotFound for a check on an unknown table
        return self

    @model_validator(mode="after")
    def _governance_names_tables(self) -> "Config":
        self.table(self.governance.erasures_table)
        self.table(self.access.audit_table)
        for name, role in self.access.roles.items():
            for grant in role.read:
                layer, _, table = grant.partition(".")
                if grant != "*" and (layer not in self.tables or (table != "*" and table not in self.tables[layer])):
                    raise ValueError(f"access.roles.{name}.read: {grant!r} is no configured table or layer.*")
        unknown = sorted(set(self.governance.retention) - set(self.tables))
        if unknown:
            raise ValueError(f"governance.retention names no configured layer: {', '.join(unknown)}")
        return self

    @field_validator("table_paths")
    @classmethod
    def _paths_name_tables(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if "." not in name:
                raise ValueError(f"table_paths key {name!r} must be 'layer.table'")
        return v

    @property
    def training_set_table(self) -> str:
        """The configured training set (its default where no `training:` is configured, for `tidewater jobs`)."""
        return self.training.training_set if self.training else "features.training_set"

    @property
    def root(self) -> Path:
        return Path(self.storage.root)

    @property
    def landing_dir(self) -> Path:
        return self.root / "landing"

    def checkpoint_dir(self, job: str, name: str) -> Path:
        return self.root / "_checkpoints" / job / name

    def table_names(self) -> list[str]:
        return [f"{layer}.{t}" for layer, names in self.tables.items() for t in names]

    def table(self, name: str) -> TableRef:
        """Look up a configured table by `layer.name`; unknown names are an error, not a guess."""
        layer, _, short = name.partition(".")
        if short not in self.tables.get(layer, []):
            raise TableNotFound(
                f"table {name!r} is not configured",
                hint=f"configured tables: {', '.join(self.table_names())}",
            )
        path = self.table_paths.get(name) or str(self.root / "tables" / layer / short)
        return TableRef(name=name, path=path)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML ({problem})", hint="fix the file's syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _env_layers(conf_dir: Path, env: str, below: tuple[str, ...] = ()) -> dict:
    """An env's settings over those of the env it `extends:` (and so on down), base not included."""
    data = _read_yaml(conf_dir / f"{env}.yaml")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if parent in (*below, env) or not (conf_dir / f"{parent}.yaml").is_file():
        raise ConfigError(f"{env}.yaml extends {parent!r}, which is not another env's file",
                          hint=f"known envs: {', '.join(sorted(p.stem for p in conf_dir.glob('*.yaml') if p.stem != 'base'))}")
    return _deep_merge(_env_layers(conf_dir, parent, (*below, env)), data)


def load_config(
    env: str | None = None,
    root: str | os.PathLike | None = None,
    conf_dir: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Merge base + env YAML, apply --root/env-var overrides, and validate into a Config."""
    conf_dir = Path(conf_dir or os.environ.get("TIDEWATER_CONF_DIR") or DEFAULT_CONF_DIR)
    env = env or os.environ.get(ENV_VAR_ENV) or "local"
    base_file = conf_dir / "base.yaml"
    env_file = conf_dir / f"{env}.yaml"
    if not base_file.is_file():
        raise ConfigError(f"{base_file} not found", hint="pass --conf-dir or run from the project")
    if not env_file.is_file():
        known = sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != "base")
        raise ConfigError(f"unknown env {env!r}: {env_file} not found", hint=f"known envs: {', '.join(known)}")
    data = _deep_merge(_read_yaml(base_file), _env_layers(conf_dir, env))
    data = _deep_merge(data, overrides or {})
    root = root or os.environ.get(ENV_VAR_ROOT)
    if root:
        data.setdefault("storage", {})["root"] = str(root)
    if os.environ.get(ENV_VAR_MASTER):
        data.setdefault("spark", {})["master"] = os.environ[ENV_VAR_MASTER]
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(
            f"invalid configuration ({base_file.name} + {env_file.name}): {where}: {first['msg']}",
            hint=f"{err.error_count()} problem(s); check {env_file}",
        ) from None
    storage_root = Path(cfg.storage.root).expanduser()
    if not storage_root.is_absolute():
        storage_root = conf_dir.resolve().parent / storage_root
    return cfg.model_copy(update={"storage": StorageConf(root=str(storage_root.resolve()))})
