"""Tidewater's JVM functions, named in every session: the JSON shape the schema screen reads."""

from pyspark.sql import functions as F

from lakehouse.jvm_functions import JSON_SHAPE, JSON_SHAPE_EXTRA_BIT

EXTRA = 1 << JSON_SHAPE_EXTRA_BIT


def test_a_json_lines_shape_names_its_declared_fields_and_whether_it_has_others(spark):
    lines = {
        '{"a": 1, "b": "x", "c": null}': 0b111,
        '{"c":3,"a":1}': 0b101,  # order does not matter
        '{"a": {"b": 1, "z": [1, {"c": 2}]}}': 0b001,  # nested keys are values, not fields
        '{"a": 1, "loyalty_tier": "gold"}': 0b001 | EXTRA,
        '{"a": 1, "a": 2}': 0b001,
        '{}': 0,
        '[{"a": 1}]': None,  # not an object
        '"a"': None,
        '{"a": 1, "b": ': None,  # cut short
        '': None,
    }
    df = spark.createDataFrame([(line,) for line in lines] + [(None,)], "line string")
    got = {r["line"]: r["shape"] for r in
           df.select("line", F.call_function(JSON_SHAPE, "line", F.lit("a,b,c")).alias("shape")).collect()}
    assert got == {**lines, None: None}


def test_the_shape_agrees_with_sparks_json_object_keys(spark):
    lines = ['{"a": 1, "b": [1, 2], "d": {"e": 1}}', '{"b": "x\\\\", "a": "\\"quoted\\": no key"}',
             '{"a": 1} trailing', '{"é": 1, "b": 2}']
    df = spark.createDataFrame([(line,) for line in lines], "line string").select(
        F.call_function(JSON_SHAPE, "line", F.lit("a,b,c")).alias("shape"), F.json_object_keys("line").alias("keys"))
    for r in df.collect():
        keys = r["keys"] or []
        expected = sum(1 << i for i, f in enumerate("abc") if f in keys) | (EXTRA if set(keys) - set("abc") else 0)
        assert r["shape"] == (expected if r["keys"] is not None else None)
