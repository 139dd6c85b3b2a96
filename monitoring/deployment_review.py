"""review_deployment: live traffic promotes a shadow or canary model, or rolls it back, with no human step.

The routes are compared on the same transactions: every one the live model scored since its rollout
began, scored by it and by the champion (all traffic for a shadow, the canary's share as route
`baseline` for a canary), joined to whatever labels have arrived. Per route: the alert
rate (no labels needed), the error rate (rows it could not score), recall on confirmed fraud (fraud
labels arrive first) and precision among labelled alerts. `deployment.review` says how much
evidence each needs and where the bounds are. Every review is a row of meta.deployment_reviews;
a promotion or rollback is also a row of meta.model_deployments.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.config import Config, ReviewConf
from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.model_store import alias_version, model_asset
from lakehouse.schemas import Int32, spark_schema
from lakehouse.tables import append_rows, union_all
from registry import contract
from registry.client import registry_client
from registry.contract import resolve
from registry.deployments import DEPLOYMENTS_TABLE, record_deployments
from registry.rollout import live_rollout, promote, stop_rollout
from scoring.routing import BASELINE

REVIEWS = "meta.deployment_reviews"
LABELS = "silver.labels"


@dataclass
class RouteStats:
    """One route's live evidence in the review window."""

    rows: int = 0
    errors: int = 0  # no finite score
    alerts: int = 0
    fraud: int = 0  # confirmed fraud among its rows
    caught: int = 0  # confirmed fraud it flagged
    labelled_alerts: int = 0
    true_alerts: int = 0

    @property
    def alert_rate(self) -> float:
        return self.alerts / self.rows if self.rows else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.rows if self.rows else 0.0

    @property
    def recall(self) -> float | None:
        return self.caught / self.fraud if self.fraud else None

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.labelled_alerts if self.labelled_alerts else None


@dataclass
class DeploymentReview:
    """A row of meta.deployment_reviews: the live model against the champion, and the verdict."""

    reviewed_at: dt.datetime
    model_name: str
    alias: str  # shadow | canary
    version: Int32
    champion_version: Int32
    window_start: dt.datetime
    verdict: str  # promote | rollback | wait
    reason: str
    rows: int
    alert_rate: float
    error_rate: float
    fraud: int
    recall: float | None
    precision: float | None
    champion_rows: int
    champion_alert_rate: float
    champion_fraud: int
    champion_recall: float | None
    champion_precision: float | None
    run_id: str


def verdict(live: RouteStats, champion: RouteStats, rc: ReviewConf) -> tuple[str, str]:
    """(promote | rollback | wait, why): rollback on any bound crossed, promotion on recall, else wait."""
    if live.rows < rc.min_rows:
        return "wait", f"{live.rows} live predictions so far; {rc.min_rows} needed"
    if live.error_rate > rc.max_error_rate:
        return "rollback", f"error rate {live.error_rate:.1%} over the bound {rc.max_error_rate:.1%}"
    if champion.rows >= rc.min_rows and live.alert_rate > rc.max_alert_ratio * max(champion.alert_rate, 1 / champion.rows):
        return "rollback", (f"alert rate {live.alert_rate:.1%} over {rc.max_alert_ratio}x the champion's "
                            f"{champion.alert_rate:.1%}")
    recall_known = live.fraud >= rc.min_fraud and champion.fraud >= rc.min_fraud
    if recall_known and live.recall < rc.min_recall_ratio * champion.recall:
        return "rollback", (f"recall on confirmed fraud {live.recall:.2f} under {rc.min_recall_ratio}x the champion's "
                            f"{champion.recall:.2f}")
    if (live.labelled_alerts >= rc.min_labelled_alerts and champion.labelled_alerts >= rc.min_labelled_alerts
            and live.precision < rc.min_precision_ratio * champion.precision):
        return "rollback", (f"precision among labelled alerts {live.precision:.2f} under {rc.min_precision_ratio}x "
                            f"the champion's {champion.precision:.2f}")
    if recall_known and live.recall >= champion.recall + rc.promote_recall_margin:
        return "promote", (f"recall on confirmed fraud {live.recall:.2f} vs champion's {champion.recall:.2f} "
                           f"({live.fraud} vs {champion.fraud} fraud), alert rate {live.alert_rate:.1%} vs "
                           f"{champion.alert_rate:.1%}")
    if recall_known:
        return "wait", f"recall {live.recall:.2f} does not beat the champion's {champion.recall:.2f} yet"
    return "wait", f"{min(live.fraud, champion.fraud)} confirmed fraud per route so far; {rc.min_fraud} needed"


def route_stats(predictions: DataFrame, labels: DataFrame | None) -> dict[str, RouteStats]:
    """Per route, the counts `verdict` needs (one Spark aggregation)."""
    rows = predictions if labels is None else predictions.join(labels.select("txn_id", "is_fraud"), "txn_id", "left")
    fraud = F.col("is_fraud") if labels is not None else F.lit(None).cast("boolean")
    flagged = F.col("decision") == 1
    counts = rows.groupBy("route").agg(
        F.count("*").alias("rows"),
        F.sum((F.col("score").isNull() | F.isnan("score")).cast("int")).alias("errors"),
        F.sum(flagged.cast("int")).alias("alerts"),
        F.sum(F.coalesce(fraud, F.lit(False)).cast("int")).alias("fraud"),
        F.sum((flagged & F.coalesce(fraud, F.lit(False))).cast("int")).alias("caught"),
        F.sum((flagged & fraud.isNotNull()).cast("int")).alias("labelled_alerts"),
        F.sum((flagged & F.coalesce(fraud, F.lit(False))).cast("int")).alias("true_alerts")).collect()
    return {r["route"]: RouteStats(*(int(r[k] or 0) for k in ("rows", "errors", "alerts", "fraud", "caught",
                                                              "labelled_alerts", "true_alerts"))) for r in counts}


def compared_route(alias: str) -> str:
    """The champion's route on the live model's transactions."""
    return BASELINE if alias == contract.CANARY else contract.CHAMPION


def live_predictions(run: JobRun, alias: str, since: dt.datetime) -> DataFrame | None:
    """The live route's rows since the rollout began, and the champion's rows for the same transactions."""
    frames = [run.read(t).where(F.col("route").isin(compared_route(alias), alias))
              .select("txn_id", "route", "score", "decision", "scored_at")
              for t in run.cfg.drift.current_tables if run.version_to_read(t) is not None]
    if not frames:
        return None
    rows = union_all(frames)
    live = rows.where((F.col("route") == alias) & (F.col("scored_at") >= F.lit(since))).select("txn_id").distinct()
    return rows.join(live, "txn_id", "left_semi").dropDuplicates(["txn_id", "route"]).drop("scored_at")


def _inputs(cfg: Config) -> list[str]:
    return [*cfg.drift.current_tables, LABELS, model_asset(cfg)]


@job(name="review_deployment",
     summary="Compare the live shadow or canary model with the champion on the same window of traffic; "
             "promote it or roll it back by deployment.review.",
     inputs=_inputs,
     outputs=lambda cfg: {REVIEWS: _inputs(cfg), DEPLOYMENTS_TABLE: _inputs(cfg), model_asset(cfg): _inputs(cfg)},
     skip_unchanged=False)  # aliases move outside Delta: every run looks again
def review_deployment(run: JobRun, args) -> None:
    cfg = run.cfg
    live = live_rollout(cfg)
    if live is None:
        progress(f"{run.job}: no shadow or canary model is live; nothing to review")
        return
    alias, version = live
    champion = alias_version(cfg, contract.CHAMPION)
    run.uses(model_asset(cfg), champion)
    since = resolve(cfg, alias).live_since
    predictions = live_predictions(run, alias, since)
    labels = run.read(LABELS) if run.version_to_read(LABELS) is not None else None
    stats = route_stats(predictions, labels) if predictions is not None else {}
    ours, theirs = stats.get(alias, RouteStats()), stats.get(compared_route(alias), RouteStats())
    action, reason = verdict(ours, theirs, cfg.deployment.review)
    moves = []
    client = registry_client(cfg)
    if action == "promote":
        moves = promote(client, cfg, version, f"live {alias}: {reason}", run.run_id)
    elif action == "rollback":
        moves = stop_rollout(client, cfg, "rollback", f"live {alias}: {reason}", run.run_id)
    now = dt.datetime.now(dt.timezone.utc)
    review = DeploymentReview(now, cfg.training.model_name, alias, version, champion, since, action, reason,
                              ours.rows, ours.alert_rate, ours.error_rate, ours.fraud, ours.recall, ours.precision,
                              theirs.rows, theirs.alert_rate, theirs.fraud, theirs.recall, theirs.precision, run.run_id)
    run.writing(REVIEWS)
    append_rows(run.spark, cfg.table(REVIEWS), [review], spark_schema(DeploymentReview))
    run.wrote(REVIEWS)
    if moves:
        run.writing(DEPLOYMENTS_TABLE)
        record_deployments(run.spark, cfg, moves)
        run.wrote(DEPLOYMENTS_TABLE)
        run.wrote_asset(model_asset(cfg), version if action == "promote" else champion, champion)
    run.count(action, 1)
    progress(f"{run.job}: {cfg.training.model_name} v{version} ({alias}) vs champion v{champion} since "
             f"{since:%Y-%m-%d %H:%M}: {action} ({reason})")
