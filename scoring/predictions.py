"""Scoring a DataFrame of feature rows with a resolved model, and writing predictions idempotently.

The model runs in a pandas UDF over Arrow batches, loaded once per task. Every prediction row
names the model (name, version, alias, run id) and keeps the inputs it saw, so drift can compare
them with the training set.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.config import Config
from lakehouse.tables import create_if_missing
from scoring.frames import backend, conform
from registry.contract import ResolvedModel

PREDICTION_SCHEMA = T.StructType([
    T.StructField("txn_id", T.StringType(), False),
    T.StructField("customer_id", T.StringType(), True),
    T.StructField("merchant_id", T.StringType(), True),
    T.StructField("event_time", T.TimestampType(), True),
    T.StructField("score", T.DoubleType(), True),
    T.StructField("decision", T.IntegerType(), True),  # 1: score >= threshold (send to review)
    T.StructField("threshold", T.DoubleType(), False),
    T.StructField("model_name", T.StringType(), False),
    T.StructField("model_version", T.IntegerType(), False),
    T.StructField("model_alias", T.StringType(), False),
    T.StructField("mlflow_run_id", T.StringType(), False),  # the training run behind the model version
    T.StructField("run_id", T.StringType(), False),  # the scoring job's run (meta.lineage)
    T.StructField("scored_at", T.TimestampType(), False),
    T.StructField("inputs_numeric", T.MapType(T.StringType(), T.DoubleType()), True),
    T.StructField("inputs_categorical", T.MapType(T.StringType(), T.StringType()), True),
])


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


def score(features: DataFrame, model: ResolvedModel, cfg: Config, run_id: str) -> DataFrame:
    """Feature rows (txn_id, keys, event_time, inputs) -> rows of gold.predictions."""
    udf = score_udf(model, cfg.scoring.frame_backend)
    threshold = cfg.scoring.threshold
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
        F.lit(model.alias).alias("model_alias"), F.lit(model.mlflow_run_id).alias("mlflow_run_id"), F.lit(run_id).alias("run_id"),
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
