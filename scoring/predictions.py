"""Scoring a DataFrame of feature rows with a resolved model, and writing predictions idempotently.

The model runs in a pandas UDF over Arrow batches, loaded once per task. Every prediction row
names the model (name, version, alias, run id) and keeps the inputs it saw, so drift can compare
them with the training set.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.config import Config
from lakehouse.schemas import Int32, spark_schema
from lakehouse.tables import create_if_missing
from scoring.frames import backend, conform
from registry.contract import ResolvedModel

@dataclass
class Prediction:
    """A row of gold.predictions and gold.predictions_stream."""

    txn_id: str
    customer_id: str | None
    merchant_id: str | None
    event_time: dt.datetime | None
    score: float | None
    decision: Int32 | None  # 1: score >= threshold (send to review)
    threshold: float  # the model version's own decision threshold
    model_name: str
    model_version: Int32
    model_alias: str
    route: str  # champion | canary decide; shadow | baseline (the champion beside a canary) are compared only
    mlflow_run_id: str  # the training run behind the model version
    run_id: str  # the scoring job's run (meta.lineage)
    scored_at: dt.datetime
    inputs_numeric: dict[str, float | None] | None
    inputs_categorical: dict[str, str | None] | None


PREDICTION_SCHEMA = spark_schema(Prediction)


def score_udf(model: ResolvedModel, frame_backend: str):
    """A pandas UDF: input columns in signature order -> fraud probability."""
    numeric, categorical, path = list(model.numeric), list(model.categorical), model.path

    @F.pandas_udf(T.DoubleType())
    def predict(batches: Iterator[tuple[pd.Series, ...]]) -> Iterator[pd.Series]:
        import mlflow.pyfunc

        loaded = mlflow.pyfunc.load_model(path)  # once per task, not per batch
        on = backend(frame_backend)
        for cols in batches:
            pdf = pd.DataFrame(dict(zip([*numeric, *categorical], cols)))
            scores = loaded.predict(conform(pdf, numeric, categorical, on))
            yield pd.Series(pd.Series(scores).to_numpy(dtype="float64"))

    return predict


def score(features: DataFrame, model: ResolvedModel, cfg: Config, run_id: str, route: str | None = None) -> DataFrame:
    """Feature rows (txn_id, keys, event_time, inputs) -> rows of gold.predictions (route: default the alias)."""
    udf = score_udf(model, cfg.scoring.frame_backend)
    threshold = model.threshold
    cols = [F.col(c) for c in model.inputs]
    numeric_map = F.create_map(*[x for c in model.numeric for x in (F.lit(c), F.col(c).cast("double"))]) \
        if model.numeric else F.lit(None).cast("map<string,double>")
    cat_map = F.create_map(*[x for c in model.categorical for x in (F.lit(c), F.col(c).cast("string"))]) \
        if model.categorical else F.lit(None).cast("map<string,string>")
    scored = features.withColumn("score", udf(*cols))
    return scored.select(
        "txn_id", "customer_id", "merchant_id", "event_time", "score",
        (F.col("score") >= threshold).cast("int").alias("decision"), F.lit(threshold).alias("threshold"),
        F.lit(model.name).alias("model_name"), F.lit(model.version).alias("model_version"),
        F.lit(model.alias).alias("model_alias"), F.lit(route or model.alias).alias("route"),
        F.lit(model.mlflow_run_id).alias("mlflow_run_id"), F.lit(run_id).alias("run_id"),
        F.lit(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).cast("timestamp").alias("scored_at"),
        numeric_map.alias("inputs_numeric"), cat_map.alias("inputs_categorical"))


def merge_predictions(spark: SparkSession, path: str, predictions: DataFrame) -> None:
    """One row per (transaction, model, alias): a rerun updates nothing it already wrote the same way.

    A row is replaced when the model version or the score changed (a rescore after late events
    changed the transaction's features), so a date-range rescore refreshes what it should.
    """
    create_if_missing(spark, path, PREDICTION_SCHEMA)
    rows = predictions.select(*[F.col(f.name).cast(f.dataType) for f in PREDICTION_SCHEMA.fields])
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(rows.alias("s"), "t.txn_id = s.txn_id AND t.model_name = s.model_name AND t.model_alias = s.model_alias")
     .whenMatchedUpdateAll(condition="t.model_version <> s.model_version OR NOT (t.score <=> s.score)")
     .whenNotMatchedInsertAll().execute())
