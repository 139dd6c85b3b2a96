"""The operating loop: triggers, rollouts, live review, rollback and promotion without a human step.

Given the demo lakehouse (a champion, a drift-triggered retrain that went into shadow), these
tests drive the loop further. The drills land more days of the same scenario and move aliases, so
they are marked `late` and run after every other test that reads the demo root.
"""

from __future__ import annotations

import argparse
import fcntl
import shutil

import pytest
from mlflow import MlflowClient
from pyspark.sql import Window
from pyspark.sql import functions as F

from conftest import DEMO_DAYS, DEMO_ENV, DEMO_ROWS, conf_env
from lakehouse.bronze import ingest_bronze
from lakehouse.config import load_config
from lakehouse.errors import AlreadyRunning
from lakehouse.generator import generate
from lakehouse.lineage import lineage_rows
from lakehouse.lineage_graph import upstream_chain
from lakehouse.model_store import model_asset, tracking_uri
from lakehouse.silver import refine_silver
from lakehouse.tables import current_version, read_table
from monitoring.deployment_review import RouteStats, review_deployment, verdict
from registry.deployments import record_deployments
from registry.rollout import stop_rollout
from scoring.routing import canary_bucket
from training.continuous import continuous_training
from training.job import train as train_job

REVIEW = load_config("local").deployment.review


def client(cfg) -> MlflowClient:
    return MlflowClient(tracking_uri(cfg), tracking_uri(cfg))


def aliases(cfg) -> dict[str, int]:
    return {a: int(v) for a, v in client(cfg).get_registered_model(cfg.training.model_name).aliases.items()}


def env_with(lake, name: str, **overrides):
    """A config env over the demo's: DEMO_ENV with `overrides` merged in."""
    merged = {**DEMO_ENV, **{k: ({**DEMO_ENV.get(k, {}), **v} if isinstance(v, dict) else v)
                            for k, v in overrides.items()}}
    conf_env(lake.root, name, merged)
    return load_config(name, root=lake.root, conf_dir=lake.conf_dir)


def test_canary_routing_is_stable_per_customer_and_close_to_its_share(spark):
    cfg = load_config("local")
    assert cfg.deployment.canary_share == 0.2
    # Given 40,000 transactions of 4,000 customers
    txns = spark.range(40_000).select(F.format_string("C%07d", F.col("id") % 4000).alias("customer_id"))
    routed = txns.withColumn("canary", canary_bucket(cfg))
    per_customer = routed.groupBy("customer_id").agg(F.countDistinct("canary").alias("routes"),
                                                      F.max(F.col("canary").cast("int")).alias("canary"))
    # Then every customer takes one route for all its transactions, and about 20% of them the canary
    assert per_customer.where("routes > 1").count() == 0
    share = per_customer.agg(F.avg("canary")).first()[0]
    assert share == pytest.approx(0.2, abs=0.02)
    # and the assignment is the same on every run (a hash of the key, not a random draw)
    assert routed.where("canary").count() == txns.withColumn("canary", canary_bucket(cfg)).where("canary").count()


def stats(rows, alerts, fraud=0, caught=0, labelled_alerts=0, true_alerts=0, errors=0) -> RouteStats:
    return RouteStats(rows, errors, alerts, fraud, caught, labelled_alerts, true_alerts)


def test_the_review_rolls_back_on_any_crossed_bound_and_promotes_only_on_evidence():
    champion = stats(1000, 40, fraud=30, caught=21, labelled_alerts=30, true_alerts=15)
    assert verdict(stats(50, 2), champion, REVIEW)[0] == "wait"  # too few live rows to judge
    assert verdict(stats(1000, 40, errors=50), champion, REVIEW)[0] == "rollback"
    action, why = verdict(stats(1000, 200, fraud=30, caught=25), champion, REVIEW)
    assert action == "rollback" and "alert rate" in why  # flags 5x what the champion flags
    assert verdict(stats(1000, 40, fraud=30, caught=9), champion, REVIEW)[0] == "rollback"  # recall 0.3 vs 0.7
    assert verdict(stats(1000, 40, fraud=30, caught=24, labelled_alerts=30, true_alerts=3), champion,
                   REVIEW)[0] == "rollback"  # precision 0.1 vs 0.5
    assert verdict(stats(1000, 40, fraud=30, caught=24, labelled_alerts=30, true_alerts=16), champion,
                   REVIEW)[0] == "promote"
    assert verdict(stats(1000, 40, fraud=4, caught=4), champion, REVIEW)[0] == "wait"  # too few confirmed fraud


@pytest.mark.slow
def test_the_demo_retrained_on_drift_and_recorded_every_decision(spark, demo_lake):
    cfg = demo_lake.cfg
    decisions = read_table(spark, cfg.table("meta.training_triggers")).orderBy("decided_at").collect()
    retrains = [d for d in decisions if d["action"] == "retrain"]
    assert retrains and "drift" in retrains[0]["fired"] and retrains[0]["new_version"]
    assert all(d["reasons"] and d["outcome"] for d in decisions)  # "nothing to do" is recorded with its reason
    moves = read_table(spark, cfg.table("meta.model_deployments")).toPandas()
    started = moves[(moves.action == "shadow_start") & (moves.to_version == retrains[0]["new_version"])]
    rejected = "rejected" in retrains[0]["outcome"]
    assert rejected or len(started) == 1
    assert "continuous training" in demo_lake.output and "triggers fired:" in demo_lake.output


def trigger_env(lake, name: str, only: str, **bounds):
    """Only trigger `only` is on, with these bounds."""
    triggers = {t: {"enabled": t == only} for t in ("schedule", "new_labels", "drift", "performance")}
    triggers[only].update(bounds)
    return env_with(lake, name, continuous_training=triggers)


def judged(spark, cfg) -> list[str]:
    continuous_training(spark, cfg, dry_run=True)
    return read_table(spark, cfg.table("meta.training_triggers")).orderBy(F.col("decided_at").desc()).first()["fired"]


@pytest.mark.slow
def test_each_trigger_fires_on_its_own_condition_and_not_otherwise(spark, demo_lake):
    cases = {  # trigger: (bounds that fire on the demo's data, bounds that do not)
        "schedule": ({"max_model_age_hours": 1e-6}, {"max_model_age_hours": 1e6}),
        "new_labels": ({"min_rows": 1}, {"min_rows": 10_000_000}),
        "performance": ({"metric": "recall", "min_value": 1.0, "windows_below": 1, "of_last": 3},
                        {"metric": "recall", "min_value": 0.0, "windows_below": 1, "of_last": 3}),
    }
    for trigger, (fires, quiet) in cases.items():
        assert judged(spark, trigger_env(demo_lake, f"ct_{trigger}_on", trigger, **fires)) == [trigger], trigger
        assert judged(spark, trigger_env(demo_lake, f"ct_{trigger}_off", trigger, **quiet)) == [], trigger
    # Drift fires on unconsumed windows of the champion only: the demo's retrain consumed the ones it answered
    cfg = trigger_env(demo_lake, "ct_drift", "drift", min_events=1)
    champion = aliases(cfg)["champion"]
    events = read_table(spark, cfg.table("meta.drift_events")).where(
        (F.col("model_version") == champion) & (F.col("slice_value") == "__all__") & F.col("consumed_at").isNull())
    assert judged(spark, cfg) == (["drift"] if events.count() else [])


@pytest.mark.slow
def test_two_continuous_training_runs_cannot_both_deploy(spark, demo_lake):
    cfg = demo_lake.cfg
    before = current_version(spark, cfg.table("meta.training_triggers"))
    lock = cfg.root / "_locks" / "continuous_training.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as held:  # another run holds the lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(AlreadyRunning, match="another continuous_training run"):
            continuous_training(spark, cfg)
    assert current_version(spark, cfg.table("meta.training_triggers")) == before  # it decided nothing


def land_days(spark, cfg, first_day: int, last_day: int) -> None:
    """Days first_day..last_day of the demo's own scenario arrive, and the pipeline takes them in."""
    from lakehouse.gold import build_gold
    from features.offline import compute_features

    staging = cfg.root / f"staging-{first_day}"
    settings = cfg.generator.model_dump() | {"rows": DEMO_ROWS * (last_day + 1) // DEMO_DAYS, "days": last_day + 1}
    generate(staging, first_day=first_day, **settings)
    for batch in sorted(staging.glob("batch-*")):
        shutil.move(str(batch), cfg.landing_dir / batch.name)
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    build_gold(spark, cfg)
    compute_features(spark, cfg)


def run_train(spark, lake, cfg, **options):
    args = argparse.Namespace(env=cfg.env, root=str(lake.root), conf_dir=str(lake.conf_dir), engine=None, num_proc=1,
                              max_epochs=None, training_set_version=None, result_file=None, force=True, strategy=None)
    for key, value in options.items():
        setattr(args, key, value)
    return train_job(spark, cfg, args).summary


def shuffled_labels(rows):
    """The same rows with is_fraud permuted among them: a model trained on it has learnt nothing."""
    def in_random_order(seed: int):
        return F.row_number().over(Window.orderBy(F.rand(seed)))

    features = rows.drop("is_fraud").withColumn("_k", in_random_order(3))
    labels = rows.select("is_fraud").withColumn("_k", in_random_order(5))
    return features.join(labels, "_k").drop("_k")


def live_rows(spark, cfg, route: str, since) -> int:
    return read_table(spark, cfg.table("gold.predictions_stream")).where(
        (F.col("route") == route) & (F.col("scored_at") >= F.lit(since))).count()


@pytest.mark.slow
@pytest.mark.late
def test_drill_a_bad_canary_is_rolled_back_and_a_good_one_promoted_with_no_human_step(spark, demo_lake):
    from scoring.stream import score_stream

    lake = demo_lake
    drill = {"deployment": {"strategy": "canary", "canary_share": 0.5,
                            "review": {"min_rows": 50, "min_fraud": 3, "min_labelled_alerts": 5}},
             # Validation lets anything with an AUC-PR through (the base bar over the champion is unset too):
             # the live review has to catch a bad model
             "training": {**DEMO_ENV["training"], "promotion": {"metric": "auc_pr",
                                                                "bounds": {"auc_pr": {"threshold": 0.0001, "min_absolute_change": None}}}}}
    cfg = env_with(lake, "drill", **drill)
    review_deployment(spark, cfg)  # whatever the demo left live is reviewed first ...
    record_deployments(spark, cfg, stop_rollout(client(cfg), cfg, "shadow_stop", "drill starts", None))  # ... and ends
    champion = aliases(cfg)["champion"]

    # Given a challenger trained on shuffled labels (a copy of the training set with is_fraud permuted)
    shuffled_table = "features.training_set_shuffled"
    bad_cfg = env_with(lake, "drill_bad", **{**drill, "training": {**drill["training"], "training_set": shuffled_table}},
                       tables={**cfg.tables, "features": [*cfg.tables["features"], "training_set_shuffled"]})
    shuffled_labels(read_table(spark, cfg.table("features.training_set"))).write.format("delta") \
        .mode("overwrite").save(bad_cfg.table(shuffled_table).path)
    bad = run_train(spark, lake, bad_cfg, env="drill_bad", strategy="canary")
    assert bad["deployed_as"] == "canary" and aliases(cfg)["canary"] == bad["model_version"]
    # When live traffic arrives and the stream scores it (the canary decides for its share)
    land_days(spark, cfg, DEMO_DAYS, DEMO_DAYS + 2)
    since = client(cfg).get_model_version(cfg.training.model_name, str(bad["model_version"])).tags["tidewater.live_since"]
    score_stream(spark, cfg)
    assert live_rows(spark, cfg, "canary", since) > 0
    # Then the review rolls it back: the canary alias is gone, the champion never moved
    review_deployment(spark, cfg)
    assert "canary" not in aliases(cfg) and aliases(cfg)["champion"] == champion
    last = read_table(spark, cfg.table("meta.model_deployments")).orderBy(F.col("deployed_at").desc()).first()
    assert (last["action"], last["alias"], last["from_version"]) == ("rollback", "canary", bad["model_version"])
    assert last["actor"] and "live canary" in last["reason"]

    # Given a challenger as good as the champion (its own training set version and seed)
    tags = client(cfg).get_run(client(cfg).get_model_version(cfg.training.model_name, str(champion)).run_id).data.tags
    good = run_train(spark, lake, cfg, strategy="canary", num_proc=2,
                     training_set_version=int(tags["tidewater.training_set_version"]))
    assert good["deployed_as"] == "canary"
    # When the next days arrive, then the canary decides for its share and earns the champion alias
    land_days(spark, cfg, DEMO_DAYS + 3, DEMO_DAYS + 5)
    score_stream(spark, cfg)
    review_deployment(spark, cfg)
    assert aliases(cfg)["champion"] == good["model_version"] and "canary" not in aliases(cfg)
    actions = [r["action"] for r in read_table(spark, cfg.table("meta.model_deployments"))
               .orderBy(F.col("deployed_at").desc()).limit(2).collect()]
    assert actions == ["promote", "canary_stop"]


@pytest.mark.slow
@pytest.mark.late
def test_drill_shadow_scores_the_same_traffic_and_never_changes_a_decision(spark, demo_lake):
    from scoring.batch import score_batch
    from scoring.stream import score_stream

    lake = demo_lake
    cfg = env_with(lake, "drill_shadow", deployment={"strategy": "shadow"},
                   training={**DEMO_ENV["training"], "promotion": {"metric": "auc_pr",
                                                                   "bounds": {"auc_pr": {"threshold": 0.0001, "min_absolute_change": None}}}})
    champion = aliases(cfg)["champion"]
    shadow = run_train(spark, lake, cfg, strategy="shadow")
    assert shadow["deployed_as"] == "shadow"
    land_days(spark, cfg, DEMO_DAYS + 6, DEMO_DAYS + 6)
    score_stream(spark, cfg)
    day = read_table(spark, cfg.table("silver.transactions")).agg(F.max(F.to_date("event_time"))).first()[0]
    scored = read_table(spark, cfg.table("gold.predictions_stream")).where(F.to_date("event_time") == F.lit(day))
    by_route = {r["route"]: r["n"] for r in scored.groupBy("route").agg(F.countDistinct("txn_id").alias("n")).collect()}
    assert by_route["shadow"] == by_route["champion"] > 0  # the same transactions, all of them
    deciding = scored.where(F.col("route") != "shadow")
    assert deciding.groupBy("txn_id").count().where("count > 1").count() == 0
    assert {r["model_version"] for r in deciding.select("model_version").distinct().collect()} == {champion}
    # and the run's lineage names both model versions that scored, each traced to the run that trained it
    run = max((r for r in lineage_rows(spark, cfg) if r["job"] == "score_stream"), key=lambda r: r["ended_at"])
    asset = model_asset(cfg)
    assert [i["version"] for i in run["inputs"] if i["table"] == asset] == [champion, shadow["model_version"]]
    stream_v = next(o["version"] for o in run["outputs"] if o["table"] == "gold.predictions_stream")
    models = [n for n in upstream_chain(lineage_rows(spark, cfg), "gold.predictions_stream", stream_v)["inputs"]
              if n["table"] == asset]
    assert [(n["version"], n["produced_by"]["job"]) for n in models] == [(champion, "train"), (shadow["model_version"], "train")]
    # The champion's rows are what the champion alone decides: scoring again without the shadow changes none
    record_deployments(spark, cfg, stop_rollout(client(cfg), cfg, "shadow_stop", "drill ends", None))
    before = deciding.select("txn_id", "score", "decision").orderBy("txn_id").collect()
    score_batch(spark, cfg, since=day, until=day)
    after = read_table(spark, cfg.table("gold.predictions")).where(
        (F.to_date("event_time") == F.lit(day)) & (F.col("route") == "champion")) \
        .select("txn_id", "score", "decision").orderBy("txn_id").collect()
    assert [(r["txn_id"], r["decision"]) for r in after] == [(r["txn_id"], r["decision"]) for r in before]
