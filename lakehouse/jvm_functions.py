"""Tidewater's own Spark functions (jvm/, compiled into jars/tidewater-spark.jar by `make setup`),
named in every session the project builds."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import types as T

PII_TOKEN = "tidewater_pii_token"
PII_KEY_FINGERPRINT = "tidewater_pii_key_fingerprint"
JSON_SHAPE = "tidewater_json_shape"
JSON_SHAPE_EXTRA_BIT = 62  # JsonShape.EXTRA_BIT: set for a line with a key that is not a declared field

_CLASSES = {PII_TOKEN: ("PiiToken", T.StringType()),
            PII_KEY_FINGERPRINT: ("PiiKeyFingerprint", T.StringType()),
            JSON_SHAPE: ("JsonShape", T.LongType())}


def register(spark: SparkSession) -> None:
    for name, (cls, returns) in _CLASSES.items():
        spark.udf.registerJavaFunction(name, f"dev.tidewater.spark.{cls}", returns)
