"""continuous_training: decide whether the champion needs a successor, and if so build one and deploy it.

Triggers (`continuous_training` in conf, each on or off) are judged on what the platform already
records: the champion's age (registry), labels that arrived after its training-set version (silver
against features.training_set), unconsumed drift windows of the champion (meta.drift_events, written
by detect_drift) and live performance below a bound in K of the last M windows
(gold.model_performance). A missing or empty table makes its trigger say so and not fire. When one
fires, the job runs build_training_set -> train (validation inside) -> the deployment strategy.
Every run is a row of meta.training_triggers, "nothing to do" included. One run at a time: a
second one stops with a clear message while the first holds the lock; none starts while a shadow or
canary rollout is live (review_deployment decides that one first).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakehouse.cli_options import option
from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.job_runner import find_job, job
from lakehouse.lineage import JobRun
from lakehouse.model_store import alias_version, model_asset
from lakehouse.schemas import spark_schema
from lakehouse.tables import append_rows
from features.maturity import first_mature_day, mature
from registry import contract
from registry.client import registry_client
from registry.deployments import DECISIONS_TABLE, DEPLOYMENTS_TABLE
from registry.rollout import live_rollout
from training.validation import STRATEGY_OPTION

TRIGGERS = "meta.training_triggers"
LABELS, TRANSACTIONS = "silver.labels", "silver.transactions"
DRIFT_EVENTS, PERFORMANCE = "meta.drift_events", "gold.model_performance"
OVERALL = "__all__"  # detect_drift's slice of every row


@dataclass
class Trigger:
    name: str
    fired: bool
    reason: str


@dataclass
class TrainingTrigger:
    """A row of meta.training_triggers: one continuous_training decision and what came of it."""

    decided_at: dt.datetime
    model_name: str
    champion_version: int | None
    fired: list[str]
    reasons: dict[str, str]  # every trigger, fired or not, and why
    action: str  # retrain | nothing
    outcome: str
    new_version: int | None
    run_id: str
    actor: str = field(default="")


def schedule_trigger(run: JobRun, champion) -> Trigger:
    conf = run.cfg.continuous_training.schedule
    created = dt.datetime.fromtimestamp(champion.creation_timestamp / 1000, dt.timezone.utc)
    age = (dt.datetime.now(dt.timezone.utc) - created).total_seconds() / 3600
    return Trigger("schedule", age > conf.max_model_age_hours,
                   f"champion v{champion.version} is {age:.1f} h old (bound {conf.max_model_age_hours:g} h)")


def new_labels_trigger(run: JobRun, champion_tags: dict) -> Trigger:
    conf, table = run.cfg.continuous_training.new_labels, run.cfg.training_set_table
    if run.version_to_read(LABELS) is None:
        return Trigger("new_labels", False, f"{LABELS} has not been written yet")
    key = run.cfg.training.id_column
    trained = run.read(table).where(F.col(run.cfg.training.label).isNotNull()).select(key)
    txns = run.read(TRANSACTIONS)
    trainable = mature(txns, first_mature_day(run.cfg, txns)).select(F.col("txn_id").alias(key))
    new = (run.read(LABELS).select(F.col("txn_id").alias(key)).join(trainable, key)
           .join(trained, key, "left_anti").count())
    return Trigger("new_labels", new >= conf.min_rows,
                   f"{new} labels of mature transactions arrived after "
                   f"{table}@v{champion_tags[contract.TRAINING_SET_VERSION]} (bound {conf.min_rows})")


def unconsumed_drift(run: JobRun, version: int):
    return run.read(DRIFT_EVENTS).where((F.col("model_version") == version) & (F.col("slice_value") == OVERALL)
                                        & F.col("consumed_at").isNull())


def drift_trigger(run: JobRun, version: int) -> Trigger:
    conf = run.cfg.continuous_training.drift
    if run.version_to_read(DRIFT_EVENTS) is None:
        return Trigger("drift", False, f"{DRIFT_EVENTS} has not been written yet (run detect_drift)")
    events = unconsumed_drift(run, version).select("window_start", "drifted_features").collect()
    features = sorted({f for e in events for f in e["drifted_features"]})
    days = sorted(e["window_start"] for e in events)
    span = f"{days[0]:%Y-%m-%d} .. {days[-1]:%Y-%m-%d}; " if days else ""
    shown = ", ".join(features[:5]) + (f" and {len(features) - 5} more" if len(features) > 5 else "")
    return Trigger("drift", len(events) >= conf.min_events,
                   f"{len(events)} unconsumed drift window(s) of v{version} (bound {conf.min_events})"
                   + (f": {span}{shown}" if events else ""))


def performance_trigger(run: JobRun, version: int) -> Trigger:
    conf = run.cfg.continuous_training.performance
    if run.version_to_read(PERFORMANCE) is None:
        return Trigger("performance", False, f"{PERFORMANCE} has not been written yet (labels, then detect_drift)")
    windows = (run.read(PERFORMANCE).where(F.col("model_version") == version).orderBy(F.col("window_start").desc())
               .limit(conf.of_last).select(conf.metric).collect())
    values = [w[conf.metric] for w in windows if w[conf.metric] is not None]
    below = sum(v < conf.min_value for v in values)
    return Trigger("performance", below >= conf.windows_below,
                   f"{conf.metric} under {conf.min_value} in {below} of the last {len(windows)} window(s) of v{version} "
                   f"(bound {conf.windows_below} of {conf.of_last})")


def judge_triggers(run: JobRun, champion_version: int) -> list[Trigger]:
    cfg, ct = run.cfg, run.cfg.continuous_training
    client = registry_client(cfg)
    champion = client.get_model_version(cfg.training.model_name, str(champion_version))
    tags = client.get_run(champion.run_id).data.tags
    checks = {"schedule": lambda: schedule_trigger(run, champion), "new_labels": lambda: new_labels_trigger(run, tags),
              "drift": lambda: drift_trigger(run, champion_version),
              "performance": lambda: performance_trigger(run, champion_version)}
    return [checks[name]() if getattr(ct, name).enabled else Trigger(name, False, "off in continuous_training")
            for name in checks]


def consume_drift(run: JobRun, version: int, at: dt.datetime) -> None:
    """Mark the drift windows this retrain answered, so they do not trigger again."""
    run.writing(DRIFT_EVENTS)
    DeltaTable.forPath(run.spark, run.cfg.table(DRIFT_EVENTS).path).update(
        condition=(F.col("model_version") == version) & (F.col("slice_value") == OVERALL) & F.col("consumed_at").isNull(),
        set={"consumed_at": F.lit(at.replace(tzinfo=None))})
    run.wrote(DRIFT_EVENTS)


def record(run: JobRun, row: TrainingTrigger) -> None:
    from lakehouse.identity import current_user

    row.actor = current_user()
    run.writing(TRIGGERS)
    append_rows(run.spark, run.cfg.table(TRIGGERS), [row], spark_schema(TrainingTrigger))
    run.wrote(TRIGGERS)


def retrain(run: JobRun, args) -> dict:
    """build_training_set -> train (validation and the strategy's alias moves inside it)."""
    steps = {"env": args.env, "root": args.root, "conf_dir": args.conf_dir}
    for table in (run.cfg.training_set_table, DECISIONS_TABLE, DEPLOYMENTS_TABLE):
        run.writing(table)
    find_job("build_training_set")(run.spark, run.cfg, **steps)
    trained = find_job("train")(run.spark, run.cfg, **steps, strategy=args.strategy, force=True)
    for table in (run.cfg.training_set_table, DECISIONS_TABLE, DEPLOYMENTS_TABLE):
        run.wrote(table)
    return getattr(trained, "summary", {}) or {}


def _inputs(cfg: Config) -> list[str]:
    return [LABELS, TRANSACTIONS, DRIFT_EVENTS, PERFORMANCE, cfg.training_set_table, model_asset(cfg)]


def _plan(run: JobRun, args) -> dict[str, int | None]:
    """The latest versions, but the training set at the champion's own version (new labels count from there)."""
    planned = run.current_versions(run.declared_inputs)
    champion = planned[model_asset(run.cfg)]
    if champion is not None:
        client = registry_client(run.cfg)
        tags = client.get_run(client.get_model_version(run.cfg.training.model_name, str(champion)).run_id).data.tags
        if tags.get(contract.TRAINING_SET) == run.cfg.training_set_table:
            planned[run.cfg.training_set_table] = int(tags[contract.TRAINING_SET_VERSION])
    return planned


@job(name="continuous_training",
     summary="Judge the retraining triggers (schedule, new labels, drift, live performance); when one fires, "
             "build the training set, train, validate and deploy by the configured strategy.",
     inputs=_inputs,
     outputs=lambda cfg: {TRIGGERS: _inputs(cfg), DRIFT_EVENTS: [DRIFT_EVENTS, model_asset(cfg)],
                          cfg.training_set_table: _inputs(cfg), DECISIONS_TABLE: _inputs(cfg),
                          DEPLOYMENTS_TABLE: _inputs(cfg), model_asset(cfg): _inputs(cfg)},
     options=[STRATEGY_OPTION,
              option("--dry-run", is_flag=True, help="judge and record the triggers, but do not retrain")],
     plan=_plan,
     skip_unchanged=False,  # the schedule trigger fires on time alone
     busy="deciding or deploying")  # two runs at once cannot both deploy
def continuous_training(run: JobRun, args) -> None:
    cfg = run.cfg
    champion = alias_version(cfg, contract.CHAMPION)
    run.uses(model_asset(cfg), champion)
    now = dt.datetime.now(dt.timezone.utc)
    name = cfg.training.model_name
    if champion is None:
        record(run, TrainingTrigger(now, name, None, [], {}, "nothing", "no champion yet: run train first", None,
                                    run.run_id))
        progress(f"{run.job}: no champion yet; run `tidewater run train` first")
        return
    live = live_rollout(cfg)
    triggers = judge_triggers(run, champion)
    fired = [t.name for t in triggers if t.fired]
    reasons = {t.name: t.reason for t in triggers}
    for t in triggers:
        progress(f"{run.job}: {t.name}: {'FIRED' if t.fired else 'quiet'} ({t.reason})")
    if live is not None:
        outcome = f"v{live[1]} is live as {live[0]}; review_deployment decides it before another retrain"
        action, new_version = "nothing", None
    elif not fired:
        outcome, action, new_version = "no trigger fired", "nothing", None
    elif args.dry_run:
        outcome, action, new_version = "dry run: would retrain", "nothing", None
    else:
        summary = retrain(run, args)
        if "drift" in fired:
            consume_drift(run, champion, now)
        new_version = summary.get("model_version")
        action = "retrain"
        outcome = (f"v{new_version}: {summary.get('deployed_as') or 'rejected'} ({summary.get('reason')})"
                   if new_version else "train found nothing new to train on")
        run.wrote_asset(model_asset(cfg), alias_version(cfg, contract.CHAMPION), champion)
    record(run, TrainingTrigger(now, name, champion, fired, reasons, action, outcome, new_version, run.run_id))
    run.count("fired", len(fired))
    progress(f"{run.job}: {action}: {outcome}")
