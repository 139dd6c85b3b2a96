"""Scoring and drift on the demo scenario: batch = in-process, exactly-once streaming, planted drift found."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from scipy import stats
from scipy.spatial.distance import jensenshannon

from conftest import DRIFT_FROM_DAY
from lakehouse.config import DriftConf
from lakehouse.errors import AlreadyRunning
from lakehouse.model_store import tracking_uri
from lakehouse.tables import read_table
from features.maturity import first_mature_day, mature
from features.training_set import build_training_set
from monitoring import drift_stats
from scoring.batch import score_batch
from scoring.routing import DECIDING
from monitoring.drift import compare
from scoring.stream import score_stream, stream_dir

SCORE_TOLERANCE = 1e-6  # float32 network: the same inputs give the same score to ~1e-7


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"alias": None, "since": None, "until": None, "continuous": False, **kw})


def inputs_frame(rows: pd.DataFrame, model) -> pd.DataFrame:
    """The model inputs a prediction row recorded, as the pyfunc's signature types them."""
    schema = model.metadata.get_input_schema().inputs
    out = {}
    for spec in schema:
        source = "inputs_numeric" if spec.type.name in ("double", "long", "integer", "float") else "inputs_categorical"
        out[spec.name] = [m.get(spec.name) if m else None for m in rows[source]]
    frame = pd.DataFrame(out)
    for spec in schema:
        if spec.type.name == "double":
            frame[spec.name] = frame[spec.name].astype("float64")
    return frame


def mature_silver(spark, cfg):
    """The transactions scoring takes: those with a full feature window of history behind them."""
    txns = read_table(spark, cfg.table("silver.transactions"))
    return mature(txns, first_mature_day(cfg, txns))


def test_batch_scores_equal_the_models_in_process_scores_and_the_training_features(spark, demo_lake):
    cfg = demo_lake.cfg
    mlflow.set_tracking_uri(tracking_uri(cfg))
    # Given the training set and the predictions on the same data (late events of the new arrival
    # changed some earlier transactions' features since the first pass scored them)
    build_training_set(spark, cfg)
    span = mature_silver(spark, cfg).agg(
        F.min(F.to_date("event_time")).alias("lo"), F.max(F.to_date("event_time")).alias("hi")).first()
    score_batch(spark, cfg, args(since=span["lo"], until=span["hi"]))
    predictions = read_table(spark, cfg.table("gold.predictions")).orderBy("txn_id").limit(400).toPandas()
    model = mlflow.pyfunc.load_model(f"models:/{cfg.training.model_name}/{int(predictions.model_version[0])}")
    expected = np.asarray(model.predict(inputs_frame(predictions, model)))
    np.testing.assert_allclose(predictions["score"].to_numpy(), expected, rtol=0, atol=SCORE_TOLERANCE)
    assert (predictions["decision"] == (predictions["score"] >= predictions["threshold"]).astype(int)).all()
    assert set(predictions["model_alias"]) == {"champion"} and predictions["run_id"].notna().all()
    # No training/serving skew: labelled transactions were scored with their training-set feature values
    training = read_table(spark, cfg.table("features.training_set"))
    joined = (read_table(spark, cfg.table("gold.predictions")).join(training, "txn_id")
              .select("txn_id", "inputs_numeric", *cfg.training.numeric_features).limit(500).collect())
    assert joined
    for row in joined:
        for f in cfg.training.numeric_features:
            seen, trained = row["inputs_numeric"][f], row[f]
            assert (seen is None and trained is None) or seen == pytest.approx(float(trained), abs=1e-9), (row["txn_id"], f)


def test_a_model_download_that_stopped_half_way_is_fetched_again_not_loaded(spark, demo_lake):
    from registry.contract import COMPLETE, resolve

    cfg = demo_lake.cfg
    model = resolve(cfg)
    cached = Path(model.path)
    assert (cached / COMPLETE).exists()
    # Given the cache folder a killed download leaves: the MLmodel file, not the weights
    for entry in cached.iterdir():
        if entry.name != "MLmodel":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    # When the model is resolved again
    again = resolve(cfg)
    # Then it is downloaded afresh and complete, and scores what batch scoring recorded for it
    assert again.path == model.path and (cached / COMPLETE).exists()
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no scratch folder left
    predictions = (read_table(spark, cfg.table("gold.predictions")).where(F.col("model_version") == again.version)
                   .orderBy("txn_id").limit(50).toPandas())
    loaded = mlflow.pyfunc.load_model(again.path)
    np.testing.assert_allclose(np.asarray(loaded.predict(inputs_frame(predictions, loaded))),
                               predictions["score"].to_numpy(), rtol=0, atol=SCORE_TOLERANCE)


def deciding(predictions):
    """The predictions acted on (champion, canary): one per transaction, whether or not a shadow or a
    canary's baseline also scored it (the demo scenario leaves its challenger in shadow)."""
    return predictions.where(F.col("route").isin(*DECIDING))


def test_batch_rerun_and_date_range_rescore_add_no_rows(spark, demo_lake):
    cfg = demo_lake.cfg
    ref = cfg.table("gold.predictions")
    score_batch(spark, cfg, args())  # catches up on whatever landed since the last run
    before = deciding(read_table(spark, ref)).count()
    assert before == mature_silver(spark, cfg).count()  # the warm-up's immature rows are not scored
    score_batch(spark, cfg, args())  # nothing new
    day = read_table(spark, ref).agg(F.min(F.to_date("event_time"))).first()[0]
    score_batch(spark, cfg, args(since=day, until=day + dt.timedelta(days=1)))  # rescore two days
    table = deciding(read_table(spark, ref))
    assert table.count() == before == table.select("txn_id").distinct().count()


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_stream_restarts_with_exactly_one_prediction_per_transaction(spark, demo_lake):
    cfg, root = demo_lake.cfg, demo_lake.root
    # Given a fresh streaming query over all of mature silver (one file per micro-batch)
    shutil.rmtree(cfg.checkpoint_dir("score_stream", "predictions"), ignore_errors=True)
    shutil.rmtree(cfg.table("gold.predictions_stream").path, ignore_errors=True)
    shutil.rmtree(stream_dir(cfg), ignore_errors=True)
    env = {**os.environ, "TIDEWATER_CONF_DIR": str(demo_lake.conf_dir)}
    cli = [sys.executable, "-m", "lakehouse.cli", "stream"]
    common = ["--root", str(root), "--env", demo_lake.env]
    subprocess.run([*cli, "start", *common], env=env, check=True)
    status = lambda: json.loads(subprocess.run([*cli, "status", *common], env=env, check=True,  # noqa: E731
                                               capture_output=True, text=True).stdout)
    # When it is killed (no clean stop) as soon as its first micro-batch is committed
    status_file = stream_dir(cfg) / "status.json"

    def batches_done() -> int:
        try:
            return json.loads(status_file.read_text()).get("batches", 0)
        except (OSError, ValueError):
            return 0

    deadline = time.time() + 240
    while batches_done() < 1 and time.time() < deadline:
        time.sleep(0.1)
    pid = json.loads((stream_dir(cfg) / "pid").read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)
    _wait_for(lambda: not status()["running"], 30, "the stream to die")
    partial = deciding(read_table(spark, cfg.table("gold.predictions_stream"))).count()
    # and restarted: it resumes from its checkpoint and drains what is left
    score_stream(spark, cfg, args())
    silver = mature_silver(spark, cfg)
    stream = deciding(read_table(spark, cfg.table("gold.predictions_stream")))
    # Then every transaction has exactly one deciding prediction
    assert 0 < partial < silver.count()
    assert stream.count() == silver.count() == stream.select("txn_id").distinct().count()
    assert stream.join(silver, "txn_id", "left_anti").count() == 0
    # and the stream's scores agree with batch scoring of the same rows on the same data (a full
    # rescore: rows batch-scored before the new arrival saw fewer late events)
    span = silver.agg(F.min(F.to_date("event_time")).alias("lo"), F.max(F.to_date("event_time")).alias("hi")).first()
    score_batch(spark, cfg, args(since=span["lo"], until=span["hi"]))
    batch = deciding(read_table(spark, cfg.table("gold.predictions"))).select("txn_id", F.col("score").alias("batch_score"))
    both = stream.join(batch, "txn_id").select(F.max(F.abs(F.col("score") - F.col("batch_score"))).alias("gap"),
                                               F.count("*").alias("n")).first()
    assert both["n"] == silver.count() and both["gap"] <= SCORE_TOLERANCE
    # and of two starts at once exactly one starts a stream; a stream beside it is refused
    starts = [subprocess.Popen([*cli, "start", *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(2)]
    replies = [p.communicate(timeout=120) for p in starts]
    assert sorted(p.returncode == 0 for p in starts) == [False, True]
    refused = next(err for p, (_, err) in zip(starts, replies) if p.returncode)
    assert "already running" in refused or "another stream_start run" in refused
    _wait_for(lambda: status().get("state") == "running" and status()["running"], 120, "the restarted stream")
    with pytest.raises(AlreadyRunning, match="another score_stream run"):
        score_stream(spark, cfg, args())
    # and the CLI can stop a running stream cleanly
    stopped = subprocess.run([*cli, "stop", *common], env=env, check=True, capture_output=True, text=True).stdout
    assert "stopped" in stopped and not status()["running"]


def test_steady_state_scenario_raises_almost_no_false_alarm_and_planted_drift_every_day(spark, demo_lake):
    """Every feature the model computes from transactions, windowed ones too, on the overall slice: at
    most 2% of feature-days flagged before the drift day; amount and country flagged on every day from it.

    Features computed from labels (merchant_fraud_rate_30d) are left out of the false-alarm share: the
    reference is the labelled training set, which holds fraud labels first (they arrive in 1-5 days,
    legitimate ones in 3-11), so it over-represents fraud, and the feature most correlated with fraud
    differs between it and a day of traffic for that reason alone (an open gap: see issue 11's note)."""
    cfg = demo_lake.cfg
    from_labels = {f.name for v in cfg.features.views.values() for f in v.features
                   if (f.column or "").startswith("label_")}
    champion = min(r[0] for r in read_table(spark, cfg.table("gold.drift_metrics")).select("model_version").distinct().collect())
    metrics = read_table(spark, cfg.table("gold.drift_metrics")).where(
        (F.col("slice_value") == "__all__") & (F.col("model_version") == champion))  # the first model's windows
    drift_day = pd.Timestamp(dt.datetime(2026, 3, 1) + dt.timedelta(days=DRIFT_FROM_DAY))
    feature_days = (metrics.where(F.col("drifted").isNotNull() & ~F.col("feature").isin("score", *from_labels))
                    .groupBy("window_start", "feature").agg(F.max(F.col("drifted").cast("int")).alias("drifted"))
                    .toPandas())
    before = feature_days[feature_days.window_start < drift_day]
    after = feature_days[feature_days.window_start >= drift_day]
    assert before.window_start.nunique() >= 5 and after.window_start.nunique() >= 1, feature_days
    assert before.feature.nunique() >= 13  # the windowed features are judged too
    assert before.drifted.mean() <= 0.02, before[before.drifted == 1]
    for day, rows in after.groupby("window_start"):
        assert {"country", "amount_eur"} <= set(rows[rows.drifted == 1].feature), (day, rows)
    # and each drifted day is an event continuous training can consume
    events = read_table(spark, cfg.table("meta.drift_events")).where("slice_value = '__all__'").toPandas()
    assert set(after.window_start) <= set(events.window_start)
    perf = read_table(spark, cfg.table("gold.model_performance")).toPandas()
    assert len(perf) >= 3 and (perf.label_count > 0).all() and perf.auc_pr.dropna().between(0, 1).all()
    # and the demo said so
    assert "drifted:" in demo_lake.output or "drift 2026-03" in demo_lake.output


def test_drift_metrics_agree_with_scipy_on_the_same_samples(spark):
    """KS within 0.01 and Wasserstein within 2% (a 400-point grid), PSI and JS within 5% (approximate bin edges), chi2 exact."""
    rng = np.random.default_rng(9)
    ref = rng.lognormal(3.0, 1.0, 4000)
    cur = rng.lognormal(3.3, 1.1, 3000)
    cats_ref = rng.choice(["FR", "DE", "ES"], 4000, p=[0.5, 0.3, 0.2])
    cats_cur = rng.choice(["FR", "DE", "ES", "BR"], 3000, p=[0.4, 0.3, 0.2, 0.1])
    day = dt.datetime(2026, 5, 1, 12)
    reference = spark.createDataFrame(pd.DataFrame({"x": ref, "c": cats_ref}))
    current = spark.createDataFrame(pd.DataFrame({"x": cur, "c": cats_cur, "event_time": [day] * len(cur)}))
    cfg = DriftConf(window="1d", bins=10, grid=400, min_rows=10)
    rows = {(r["feature"], r["metric"]): r["value"] for r in compare(reference, current, ["x"], ["c"], cfg)
            if r["slice_value"] == "__all__"}
    d, p = stats.ks_2samp(ref, cur, method="asymp")
    assert rows[("x", "ks_statistic")] == pytest.approx(d, abs=0.01)
    assert np.log10(rows[("x", "ks_pvalue")]) == pytest.approx(np.log10(p), rel=0.15)
    assert rows[("x", "wasserstein")] == pytest.approx(stats.wasserstein_distance(ref, cur), rel=0.02)
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    r_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10)
    c_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10)
    assert rows[("x", "psi")] == pytest.approx(drift_stats.psi(r_counts, c_counts), rel=0.05)
    assert rows[("x", "js_distance")] == pytest.approx(jensenshannon(r_counts, c_counts, base=2), rel=0.05)
    cats = ["BR", "DE", "ES", "FR"]
    table = [[(cats_ref == c).sum() for c in cats], [(cats_cur == c).sum() for c in cats]]
    chi2, p_chi, _, _ = stats.chi2_contingency(table, correction=False)
    assert rows[("c", "chi2_statistic")] == pytest.approx(chi2, rel=1e-9)
    assert rows[("c", "js_distance")] == pytest.approx(jensenshannon(table[0], table[1], base=2), rel=1e-9)


def test_drift_stats_edge_cases():
    assert drift_stats.psi([10, 10], [10, 10]) == pytest.approx(0.0)
    assert drift_stats.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert drift_stats.chi_squared([5, 0], [0, 0]) == (0.0, 1.0)


@pytest.mark.slow
def test_scoring_and_drift_notebook_executes(demo_lake, monkeypatch):
    from test_notebooks import execute

    text = execute("04_scoring_and_drift.ipynb", demo_lake.root, monkeypatch)
    assert "flagged_share" in text and "largest_gap" in text and "drifted_features" in text


def test_drift_report_writes_html_with_plots(spark, demo_lake, tmp_path):
    from monitoring.report import write_report

    page = write_report(spark, demo_lake.cfg, str(tmp_path / "drift.html"), top=2).read_text()
    assert page.count("data:image/png;base64,") >= 3 and "Windows with drift" in page


def test_the_report_reads_windows_only_the_stream_scored_and_empty_ones(spark, demo_lake):
    from delta.tables import DeltaTable

    from monitoring.drift_job import detect_drift
    from monitoring.report import reference_and_current

    cfg = demo_lake.cfg
    # Given drift metrics for today's champion (earlier tests may have promoted a retrained model)
    detect_drift(spark, cfg, force=True)
    # and the latest drifted window's rows only in gold.predictions_stream (the demo's new arrival)
    window = (read_table(spark, cfg.table("meta.drift_events")).agg(F.max("window_start")).first()[0])
    batch = DeltaTable.forPath(spark, cfg.table("gold.predictions").path)
    before = batch.history(1).first()["version"]
    batch.delete(F.to_date("event_time") == F.lit(window.date()))
    try:
        # When the report compares reference and current distributions for it
        numeric = reference_and_current(spark, cfg, "amount_eur", window)
        categorical = reference_and_current(spark, cfg, "country", window)
        empty = reference_and_current(spark, cfg, "amount_eur", window + dt.timedelta(days=365))
    finally:
        batch.restoreToVersion(before)
    # Then the streamed rows are the current side, and a window with no rows is empty, not an error
    assert numeric["current"].sum() == pytest.approx(1.0) and numeric["reference"].sum() == pytest.approx(1.0)
    assert categorical["current"].sum() == pytest.approx(1.0)
    assert empty["current"].sum() == 0
