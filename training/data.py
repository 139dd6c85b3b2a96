"""From the training set at an exact Delta version to Petastorm-ready, encoded Parquet.

Rows are split by time (oldest train, then validation, then a held-out slice for the registry),
encoded with the same Preprocessor the model carries, and cached by Petastorm's Spark converter
under the storage root, from where each worker reads its own shard. The run logs the boundaries, so
validation rebuilds a model's held-out slice later with the same code (`labelled`, `since`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config, TrainingConf
from lakehouse.errors import TidewaterError
from training.preprocessing import Preprocessor, fit_preprocessor


class TrainingDataError(TidewaterError):
    pass


@dataclass
class Split:
    train: DataFrame
    validation: DataFrame
    holdout: DataFrame
    validation_from: float  # first event time of the validation slice (epoch seconds)
    holdout_from: float  # first event time of the held-out slice (epoch seconds)


def raw_columns(tc: TrainingConf) -> list[str]:
    return [*tc.numeric_features, *tc.categorical_features]


def time_split(df: DataFrame, tc: TrainingConf) -> Split:
    """Cut at time quantiles so validation and holdout are strictly later than what the model learns from."""
    seconds = F.col(tc.timestamp).cast("double")
    q = df.select(seconds.alias("t")).approxQuantile(
        "t", [1 - tc.validation_share - tc.holdout_share, 1 - tc.holdout_share], 0.0)
    if len(q) < 2:
        raise TrainingDataError(f"{tc.training_set} has no rows to train on",
                                hint="run build_training_set after labels have arrived")
    v_from, h_from = q
    ts = F.col(tc.timestamp)
    return Split(df.where(ts < _instant(v_from)), between(df, tc, v_from, h_from), since(df, tc, h_from), v_from, h_from)


def _instant(seconds: float) -> Column:
    return F.lit(seconds).cast("timestamp")


def between(df: DataFrame, tc: TrainingConf, start: float, end: float) -> DataFrame:
    """Rows in [start, end): with `validation_from` and `holdout_from`, a model's validation slice."""
    ts = F.col(tc.timestamp)
    return df.where((ts >= _instant(start)) & (ts < _instant(end)))


def since(df: DataFrame, tc: TrainingConf, seconds: float) -> DataFrame:
    """Rows at or after a split boundary: with `holdout_from`, a model's held-out slice."""
    return df.where(F.col(tc.timestamp) >= _instant(seconds))


def boundary_text(seconds: float) -> str:
    """A split boundary as the run logs it: UTC, readable by people and by Spark SQL, exact to the microsecond."""
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).replace(tzinfo=None)
    return stamp.isoformat(sep=" ", timespec="microseconds" if stamp.microsecond else "seconds")


def boundary_seconds(text: str) -> float:
    """The logged boundary back as epoch seconds, so a rebuilt slice starts exactly where training's did."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()


def check_columns(df: DataFrame, tc: TrainingConf) -> None:
    missing = [c for c in [*raw_columns(tc), tc.label, tc.timestamp] if c not in df.columns]
    if missing:
        raise TrainingDataError(f"{tc.training_set} lacks configured column(s): {', '.join(missing)}",
                                hint="training.numeric_features / categorical_features must name training-set columns")


def encode(df: DataFrame, pre: Preprocessor, label: str, keep: str | None = None) -> DataFrame:
    """The model's own transform, in Spark SQL, so workers read ready tensors (n0.., c0.., label)."""
    return df.select(*([F.col(keep)] if keep else []), *pre.spark_columns(label))


def labelled(df: DataFrame, tc: TrainingConf) -> DataFrame:
    """The rows a model learns and is judged on: the configured columns, a known label."""
    check_columns(df, tc)
    return df.where(F.col(tc.label).isNotNull())


def prepare(spark: SparkSession, cfg: Config, df: DataFrame) -> tuple[Split, Preprocessor]:
    tc = cfg.training
    split = time_split(labelled(df, tc), tc)
    pre = fit_preprocessor(split.train, tc.numeric_features, tc.categorical_features, tc.max_categories)
    return split, pre


def make_converter(spark: SparkSession, cfg: Config, encoded: DataFrame, partitions: int, key: str):
    """Petastorm's converter: the encoded rows as Parquet under <root>/_petastorm, one file per partition.

    Workers shard by row group, so there are at least as many files as workers. Rows go to files
    by a hash of their key, are sorted inside each, and the file list is sorted, so every rank sees
    the same rows in the same order on every run (a seeded rerun then reproduces its metrics).
    """
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    cache = (cfg.root / "_petastorm").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache.as_uri())
    laid_out = encoded.repartition(partitions, F.col(key)).sortWithinPartitions(key).drop(key)
    converter = make_spark_converter(laid_out)
    converter.file_urls = sorted(converter.file_urls)  # listed in arbitrary order; shards follow this list
    return converter
