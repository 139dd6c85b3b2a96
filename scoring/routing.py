"""Which model scores which transaction: the champion, and a live shadow or canary beside it.

The registry's aliases say what is live (registry.rollout): with `shadow` the challenger scores the
same transactions as the champion and decides nothing; with `canary` it decides for a stable hashed
share of `deployment.route_key` values (every transaction of a customer takes the same route), the
champion decides for the rest and also scores the canary's rows without deciding (route `baseline`),
so the review compares both models on the same transactions. Routes are resolved per scoring run or
micro-batch, so a rollback takes effect at the next one. Every prediction row names its route.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.lineage import JobRun
from lakehouse.model_store import model_asset
from lakehouse.tables import union_all
from registry import contract
from registry.contract import ResolvedModel, resolve
from registry.rollout import live_rollout
from scoring.predictions import score

BUCKETS = 10_000
SALT = "tidewater-canary"  # the hash that assigns route keys to buckets (changing it reshuffles traffic)
BASELINE = "baseline"  # the champion on the canary's rows: compared, not acted on
DECIDING = (contract.CHAMPION, contract.CANARY)  # routes whose decision is the one acted on


@dataclass(frozen=True)
class Route:
    name: str  # champion | canary | shadow (or the alias asked for with --alias)
    model: ResolvedModel
    where: Column | None  # over silver transaction rows: the ones it scores; None: all of them


def canary_bucket(cfg: Config) -> Column:
    """True for the canary's share of route keys: a stable hash of the key, not of the transaction."""
    bucket = F.pmod(F.xxhash64(F.lit(SALT), F.col(cfg.deployment.route_key).cast("string")), F.lit(BUCKETS))
    return bucket < F.lit(int(round(cfg.deployment.canary_share * BUCKETS)))


def routes(cfg: Config, alias: str | None = None) -> list[Route]:
    """The champion (or the alias asked for, alone), plus the live rollout when there is one.

    The live model takes only traffic that arrived after its rollout began (`_ingested_at`), so a
    backlog or a rescore of history stays with the champion.
    """
    base = resolve(cfg, alias)
    if base.alias != contract.CHAMPION:
        return [Route(base.alias, base, None)]
    live = live_rollout(cfg)
    if live is None:
        return [Route(contract.CHAMPION, base, None)]
    rollout = resolve(cfg, live[0])
    arrived = F.col("_ingested_at") >= F.lit(rollout.live_since)
    if rollout.alias == contract.CANARY:
        canary = canary_bucket(cfg) & arrived
        return [Route(contract.CHAMPION, base, ~canary), Route(BASELINE, base, canary),
                Route(contract.CANARY, rollout, canary)]
    return [Route(contract.CHAMPION, base, None), Route(contract.SHADOW, rollout, arrived)]


def record_models(run: JobRun, plan: list[Route]) -> None:
    """Lineage of a routed run: the first route's model version is the model input, every other
    version that scored (canary, shadow, a promotion mid-stream) is recorded next to it."""
    asset = model_asset(run.cfg)
    if asset not in run.inputs:
        run.uses(asset, plan[0].model.version)
    for route in plan:
        run.also_uses(asset, route.model.version)


def route_pairs(txns: DataFrame, plan: list[Route]) -> DataFrame:
    """(txn_id, route) for every silver row and every route that scores it."""
    frames = [(txns if r.where is None else txns.where(r.where)).select("txn_id", F.lit(r.name).alias("route"))
              for r in plan]
    return union_all(frames)


def score_routes(features: DataFrame, pairs: DataFrame, plan: list[Route], cfg: Config, run_id: str) -> DataFrame:
    """Feature rows -> prediction rows: each route's model on the rows `pairs` gives it."""
    frames = [score(features.join(pairs.where(F.col("route") == r.name).select("txn_id"), "txn_id"), r.model, cfg,
                    run_id, r.name) for r in plan]
    return union_all(frames)


def describe(plan: list[Route]) -> str:
    return ", ".join(f"{r.name} v{r.model.version}" for r in plan)
