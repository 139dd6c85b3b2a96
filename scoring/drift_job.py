"""detect_drift: reference (the champion's training set version) vs daily windows of gold.predictions."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.errors import ConfigError
from lakehouse.job_runner import job, option
from lakehouse.lineage import JobRun
from lakehouse.model_store import model_asset
from scoring.drift import ALL, METRIC_KEYS, METRIC_SCHEMA, compare, drifted_features, merge_rows
from scoring.model import model_and_date_options, resolve
from scoring.predictions import score_udf

METRICS, PERFORMANCE, EVENTS = "gold.drift_metrics", "gold.model_performance", "meta.drift_events"

PERFORMANCE_SCHEMA = T.StructType([
    T.StructField("window_start", T.TimestampType(), False),
    T.StructField("window_end", T.TimestampType(), False),
    T.StructField("model_name", T.StringType(), False),
    T.StructField("model_version", T.IntegerType(), False),
    T.StructField("label_count", T.LongType(), False),
    T.StructField("positives", T.LongType(), False),
    T.StructField("precision", T.DoubleType(), True),
    T.StructField("recall", T.DoubleType(), True),
    T.StructField("f1", T.DoubleType(), True),
    T.StructField("auc_pr", T.DoubleType(), True),
    T.StructField("run_id", T.StringType(), False),
    T.StructField("computed_at", T.TimestampType(), False),
])

EVENT_SCHEMA = T.StructType([
    T.StructField("window_start", T.TimestampType(), False),
    T.StructField("window_end", T.TimestampType(), False),
    T.StructField("slice_column", T.StringType(), False),
    T.StructField("slice_value", T.StringType(), False),
    T.StructField("reference_table", T.StringType(), False),
    T.StructField("reference_version", T.LongType(), True),
    T.StructField("model_name", T.StringType(), False),
    T.StructField("model_version", T.IntegerType(), False),
    T.StructField("drifted_features", T.ArrayType(T.StringType()), False),
    T.StructField("detected_at", T.TimestampType(), False),
    T.StructField("run_id", T.StringType(), False),
    T.StructField("consumed_at", T.TimestampType(), True),  # set by continuous training when it acts
])


def performance_rows(run: JobRun, predictions, model, now) -> list[tuple]:
    """Precision, recall, F1 and AUC-PR per window, over predictions whose labels have arrived."""
    from sklearn.metrics import average_precision_score

    if run.version_to_read("silver.labels") is None:
        return []
    seconds, run_id = run.cfg.drift.window_seconds, run.run_id
    labelled = (predictions.join(run.read("silver.labels").select("txn_id", "is_fraud"), "txn_id")
                .select(F.timestamp_seconds(F.floor(F.unix_timestamp("event_time") / seconds) * seconds).alias("w"),
                        "score", "decision", F.col("is_fraud").cast("int").alias("y")))
    out = []
    # One pass over the labelled predictions; the windows are grouped on the driver.
    for w, pdf in sorted(labelled.toPandas().groupby("w"), key=lambda item: item[0]):
        window = w.to_pydatetime()
        tp = int(((pdf.decision == 1) & (pdf.y == 1)).sum())
        fp, fn = int(((pdf.decision == 1) & (pdf.y == 0)).sum()), int(((pdf.decision == 0) & (pdf.y == 1)).sum())
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
        auc = float(average_precision_score(pdf.y, pdf.score)) if pdf.y.sum() > 0 else None
        out.append((window, window + dt.timedelta(seconds=seconds), model.name, model.version, len(pdf),
                    int(pdf.y.sum()), precision, recall, f1, auc, run_id, now))
    return out


def current_predictions(spark, cfg: Config, run: JobRun, model):
    """The model's predictions from every configured table, one row per transaction (earlier tables win)."""
    from pyspark.sql import Window

    from lakehouse.errors import TableNotFound

    frames = []
    for rank, name in enumerate(cfg.drift.current_tables):
        if run.version_to_read(name) is None:
            continue
        frames.append(run.read(name).where((F.col("model_name") == model.name) & (F.col("model_alias") == model.alias))
                      .withColumn("_rank", F.lit(rank)))
    if not frames:
        raise TableNotFound(f"no predictions yet in {', '.join(cfg.drift.current_tables)}",
                            hint="run score_batch or score_stream first")
    union = frames[0]
    for f in frames[1:]:
        union = union.unionByName(f)
    first = F.row_number().over(Window.partitionBy("txn_id").orderBy("_rank"))
    return union.withColumn("_first", first).where("_first = 1").drop("_first", "_rank")


def _inputs(cfg: Config) -> list[str]:
    training = cfg.training.training_set if cfg.training else "features.training_set"
    return [training, *cfg.drift.current_tables, "silver.labels", model_asset(cfg)]


def _outputs(cfg: Config) -> dict[str, list[str]]:
    inputs = _inputs(cfg)
    return {METRICS: [t for t in inputs if t != "silver.labels"], EVENTS: [t for t in inputs if t != "silver.labels"],
            PERFORMANCE: [*cfg.drift.current_tables, "silver.labels", model_asset(cfg)]}


def _reference(cfg: Config, model, args) -> tuple[str, int | None]:
    """The reference table and version: --reference, else the training set the model was trained on."""
    ref_table = args.reference or model.training_set
    if not ref_table:
        raise ConfigError(f"{model.name} v{model.version} records no training set", hint="pass --reference TABLE")
    ref_version = args.reference_version
    if ref_version is None and ref_table == model.training_set:
        ref_version = model.training_set_version
    return ref_table, ref_version


def _plan(run: JobRun, args) -> dict[str, int | None]:
    """What this run compares: the model's own training set version, the predictions' latest versions."""
    model = resolve(run.cfg, args.alias)
    ref_table, ref_version = _reference(run.cfg, model, args)
    planned = run.current_versions([t for t in run.declared_inputs if t != ref_table and not t.startswith("model:")])
    planned[model_asset(run.cfg)] = model.version
    planned[ref_table] = ref_version if ref_version is not None else run.current_versions([ref_table])[ref_table]
    return planned


@job(name="detect_drift",
     summary="Compare the champion's training set with windows of scoring inputs and predictions "
             "(PSI, KS, JS, Wasserstein, chi-squared, null rates) into gold.drift_metrics.",
     inputs=_inputs,
     outputs=_outputs,
     options=[*model_and_date_options("whose predictions and training set to compare (default: scoring.alias)",
                                      "of the current windows"),
              option("--reference", help="reference table (default: the training set the model was trained on)"),
              option("--reference-version", type=int, help="reference Delta version (default: the model's)")],
     rerun_options=("since", "until"),
     plan=_plan)
def detect_drift(run: JobRun, args) -> None:
    spark, cfg = run.spark, run.cfg
    model = resolve(cfg, args.alias)
    run.uses(model_asset(cfg), model.version)
    dc = cfg.drift
    ref_table, ref_version = _reference(cfg, model, args)
    numeric = dc.numeric_features or list(model.numeric)
    categorical = dc.categorical_features or list(model.categorical)
    if dc.slice_column and dc.slice_column not in [*numeric, *categorical]:
        raise ConfigError(f"drift.slice_column {dc.slice_column!r} is not one of the compared features",
                          hint=f"choose from {', '.join([*numeric, *categorical])}")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    reference = run.read(ref_table)
    predictions = current_predictions(spark, cfg, run, model)
    if args.since:
        predictions = predictions.where(F.to_date("event_time") >= F.lit(args.since))
    if args.until:
        predictions = predictions.where(F.to_date("event_time") <= F.lit(args.until))
    current = predictions.select(
        "event_time", F.col("score").alias("prediction_score"),
        *[F.col("inputs_numeric")[f].alias(f) for f in numeric],
        *[F.col("inputs_categorical")[c].alias(c) for c in categorical])
    ref_numeric = list(dict.fromkeys([*numeric, *model.numeric]))
    ref_categorical = [c for c in dict.fromkeys([*categorical, *model.categorical]) if c not in ref_numeric]
    ref_inputs = reference.select(*[F.col(f).cast("double").alias(f) for f in ref_numeric],
                                  *[F.col(c).cast("string").alias(c) for c in ref_categorical])
    ref_scored = ref_inputs.withColumn("prediction_score",
                                       score_udf(model, cfg.scoring.frame_backend)(*[F.col(c) for c in model.inputs]))
    rows = compare(ref_scored, current, [*numeric, "prediction_score"], categorical, dc)
    current_tables = [t for t in dc.current_tables if t in run.inputs]
    cur_version = run.inputs[current_tables[0]]
    table_rows = [(r["window"], r["window_end"], dc.slice_column or "", r["slice_value"], ref_table, ref_version,
                   "+".join(current_tables), cur_version, model.version, r["feature"], r["kind"], r["metric"],
                   None if r["value"] is None else float(r["value"]), r["threshold"], r["drifted"],
                   int(r["reference_rows"]), int(r["current_rows"]), run.run_id, now) for r in rows]
    for name, schema, data, keys in (
            (METRICS, METRIC_SCHEMA, table_rows, METRIC_KEYS),
            (PERFORMANCE, PERFORMANCE_SCHEMA, performance_rows(run, predictions, model, now),
             ["window_start", "model_name", "model_version"])):
        if data:
            run.writing(name)
            merge_rows(spark, cfg.table(name).path, spark.createDataFrame(data, schema), schema, keys)
            run.wrote(name)
    drifted = drifted_features(rows)
    events = [(w, w + dt.timedelta(seconds=dc.window_seconds), dc.slice_column or "", s, ref_table, ref_version,
               model.name, model.version, feats, now, run.run_id, None) for (w, s), feats in drifted.items()]
    if events:
        from delta.tables import DeltaTable

        from lakehouse.tables import create_if_missing

        ref = cfg.table(EVENTS)
        run.writing(EVENTS)
        create_if_missing(spark, ref.path, EVENT_SCHEMA)
        keys = ["window_start", "slice_value", "reference_table", "reference_version", "model_name", "model_version"]
        (DeltaTable.forPath(spark, ref.path).alias("t")
         .merge(spark.createDataFrame(events, EVENT_SCHEMA).alias("s"),
                " AND ".join(f"t.{k} <=> s.{k}" for k in keys))
         .whenMatchedUpdate(set={"drifted_features": "s.drifted_features"}).whenNotMatchedInsertAll().execute())
        run.wrote(EVENTS)
    windows = sorted({r["window"] for r in rows})
    run.count("windows", len(windows))
    run.count("metric_rows", len(table_rows))
    run.count("drift_events", len(events))
    progress(f"{run.job}: {ref_table}@v{ref_version} vs {len(windows)} window(s) of {'+'.join(current_tables)} "
             f"({model.name} v{model.version}); {len(table_rows)} metric rows -> {METRICS}")
    for w in windows:
        feats = drifted.get((w, ALL), [])
        progress(f"{run.job}: window {w:%Y-%m-%d %H:%M}: " + (f"drifted: {', '.join(feats)}" if feats else "no drift"))
