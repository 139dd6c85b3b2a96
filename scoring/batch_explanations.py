"""Reason codes for the transactions batch scoring flagged, into gold.prediction_explanations.

The same explainer as the API (scoring.explain), run in Spark over Arrow batches with the model
loaded once per task: one row per flagged transaction, model version and rank, so a reviewer's
queue reads "why" next to "how likely".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.schemas import Int32, spark_schema
from lakehouse.tables import create_if_missing, union_all
from registry.contract import ResolvedModel
from registry.inputs import conform

EXPLANATIONS = "gold.prediction_explanations"


@dataclass
class PredictionExplanation:
    """A row of gold.prediction_explanations: one reason of one flagged prediction."""

    txn_id: str
    model_name: str
    model_version: Int32
    route: str
    rank: Int32  # 1: the input that raised the score most
    feature: str
    value: str | None
    attribution: float  # logit units: > 0 raised the score
    text: str
    run_id: str  # the scoring run (meta.lineage)
    explained_at: dt.datetime


EXPLANATION_SCHEMA = spark_schema(PredictionExplanation)


def _explain_udf(model: ResolvedModel, cfg: Config, route: str, run_id: str):
    from scoring.explain import descriptions

    numeric, categorical, path, k = list(model.numeric), list(model.categorical), model.path, cfg.scoring.reasons
    words = descriptions(cfg)

    def explain(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import mlflow.pyfunc

        from scoring.explain import Explainer

        explainer = Explainer(mlflow.pyfunc.load_model(path).unwrap_python_model(), words)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        for pdf in batches:
            reasons = explainer.reasons(conform(pdf, numeric, categorical), k)
            rows = [(txn, model.name, model.version, route, rank, r.feature, None if r.value is None else str(r.value),
                     r.attribution, r.text, run_id, now)
                    for txn, rs in zip(pdf["txn_id"], reasons) for rank, r in enumerate(rs, 1)]
            yield pd.DataFrame(rows, columns=EXPLANATION_SCHEMA.fieldNames())

    return explain


def explain_flagged(features: DataFrame, predictions: DataFrame, plan, cfg: Config, run_id: str) -> DataFrame:
    """Explanation rows for each route's flagged predictions (decision = 1)."""
    frames = []
    for route in plan:
        flagged = predictions.where((F.col("route") == route.name) & (F.col("decision") == 1)).select("txn_id")
        rows = features.join(flagged, "txn_id").select("txn_id", *route.model.inputs)
        frames.append(rows.mapInPandas(_explain_udf(route.model, cfg, route.name, run_id), EXPLANATION_SCHEMA))
    return union_all(frames)


def merge_explanations(spark: SparkSession, path: str, explanations: DataFrame) -> None:
    """One row per (transaction, model version, route, rank): a rerun replaces, never duplicates."""
    create_if_missing(spark, path, EXPLANATION_SCHEMA)
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(explanations.alias("s"), "t.txn_id = s.txn_id AND t.model_name = s.model_name AND "
                                     "t.model_version = s.model_version AND t.route = s.route AND t.rank = s.rank")
     .whenMatchedUpdateAll(condition="NOT (t.feature <=> s.feature) OR NOT (t.attribution <=> s.attribution)")
     .whenNotMatchedInsertAll().execute())
