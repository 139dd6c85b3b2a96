"""Feature store: point-in-time correctness, no training/serving skew, idempotent reruns, both online stores."""

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

import pytest
from pyspark.sql import functions as F

from conftest import run_pipeline, same_rows
from features.compute import feature_rows
from features.offline import compute_features
from features.online import materialize_online
from features.store import OnlineStoreUnavailable, feast_dir, feature_refs, feature_store, online_features
from features.maturity import HistoryTooShort
from features.training_set import build_training_set
from lakehouse.config import load_config
from lakehouse.errors import ConfigError
from lakehouse.generator import generate
from lakehouse.tables import current_version, read_table

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def test_a_feature_never_sees_events_after_its_time(spark):
    view = load_config("local").features.views["customer_features"]
    events = spark.createDataFrame([
        ("C1", T0, 10.0, "M1", 0.0),
        ("C1", T0 + dt.timedelta(minutes=30), 30.0, "M2", 1.0),
        ("C1", T0 + dt.timedelta(days=2), 500.0, "M3", 1.0),  # after the label below
    ], "customer_id string, event_time timestamp, amount_eur double, merchant_id string, is_foreign double")
    rows = {r["event_time"]: r for r in feature_rows(events, view).collect()}
    second = rows[T0 + dt.timedelta(minutes=30)]
    assert second["txn_count_1h"] == 2 and second["avg_amount_30d"] == 20.0 and second["max_amount_30d"] == 30.0
    assert second["distinct_merchants_7d"] == 2 and second["foreign_share_30d"] == 0.5
    third = rows[T0 + dt.timedelta(days=2)]
    assert third["txn_count_24h"] == 1 and third["txn_count_7d"] == 3  # 1h/24h windows slid past


def test_an_entitys_newest_row_alone_equals_its_row_among_all_windows(spark):
    """The online stream computes only each entity's newest row (one group-by): the same values as the
    window over every event gives at that event, twins in the same second and nulls included."""
    from features.compute import latest_feature_rows

    view = load_config("local").features.views["customer_features"]
    events = spark.createDataFrame([
        ("C1", T0 - dt.timedelta(days=40), 999.0, "M9", 1.0),  # outside every window of the newest row
        ("C1", T0, 10.0, "M1", None),
        ("C1", T0 + dt.timedelta(minutes=59, seconds=59), 30.0, "M2", 1.0),
        ("C1", T0 + dt.timedelta(hours=1), 50.0, "M2", 0.0),
        ("C1", T0 + dt.timedelta(hours=1), 70.0, "M3", 1.0),
        ("C2", T0, 5.0, "M1", None),
    ], "customer_id string, event_time timestamp, amount_eur double, merchant_id string, is_foreign double")
    newest = {r["customer_id"]: r.asDict() for r in latest_feature_rows(events, view).collect()}
    every = feature_rows(events, view)
    for customer, row in newest.items():
        expected = every.where(F.col("customer_id") == customer).orderBy(F.desc("event_time")).first().asDict()
        assert row.keys() == expected.keys(), customer
        for name, value in expected.items():
            assert row[name] == (pytest.approx(value) if isinstance(value, float) else value), (customer, name)
    assert newest["C1"]["txn_count_1h"] == 3 and newest["C1"]["max_amount_30d"] == 70.0  # T0 is 1h old: out
    assert newest["C2"]["foreign_share_30d"] is None


def test_point_in_time_join_uses_the_last_value_at_or_before_the_label(spark, tmp_path):
    cfg = load_config("local", root=tmp_path)
    view = cfg.features.views["customer_features"]
    events = spark.createDataFrame([("C1", T0, 10.0, "M1", 0.0), ("C1", T0 + dt.timedelta(hours=5), 90.0, "M1", 0.0)],
                                   "customer_id string, event_time timestamp, amount_eur double, merchant_id string, is_foreign double")
    feature_rows(events, view).write.format("delta").save(cfg.table(view.table).path)
    merchant = cfg.features.views["merchant_features"]
    spark.createDataFrame([("M1", T0, 1, 0.0)], "merchant_id string, event_time timestamp, merchant_txn_count_24h long, "
                          "merchant_fraud_rate_30d double").write.format("delta").save(cfg.table(merchant.table).path)
    labels_at = spark.createDataFrame(
        [("C1", "M1", T0 - dt.timedelta(hours=1)), ("C1", "M1", T0 + dt.timedelta(hours=2)),
         ("C1", "M1", T0 + dt.timedelta(hours=5)), ("C1", "M1", T0 + dt.timedelta(hours=6))],
        "customer_id string, merchant_id string, event_time timestamp")
    store = feature_store(cfg)
    joined = store.get_historical_features(entity_df=labels_at, features=["customer_features:avg_amount_30d"]).to_spark_df()
    seen = {r["event_time"]: r["avg_amount_30d"] for r in joined.collect()}
    assert seen[T0 - dt.timedelta(hours=1)] is None  # before any event: nothing, not a future value
    assert seen[T0 + dt.timedelta(hours=2)] == 10.0  # the 90.0 event at +5h is not visible yet
    assert seen[T0 + dt.timedelta(hours=5)] == 50.0
    assert seen[T0 + dt.timedelta(hours=6)] == 50.0


def test_a_transaction_is_scored_with_its_entitys_state_strictly_before_it(spark, tmp_path):
    """Given a customer's transactions at T0, two at T0+30min and one at T0+2d, each is scored with the
    row of the customer's latest event before it (what the online store holds at that moment): the
    same through Feast's offline join (training, batch) and the micro-batch recomputation (stream)."""
    from features.serving import features_as_of, point_in_time_features
    from features.sources import SOURCES
    from lakehouse.refine import SILVER_LABELS_SCHEMA

    cfg = load_config("local", root=tmp_path)
    times = [T0, T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(days=2)]
    txns = spark.createDataFrame([(f"T{i}", "C1", "M1", t, 10.0 * (i + 1), "DE", "pos", "food")
                                  for i, t in enumerate(times)],
                                 "txn_id string, customer_id string, merchant_id string, event_time timestamp, "
                                 "amount_eur double, country string, channel string, merchant_category string")
    customers = spark.createDataFrame([("C1", "DE", T0 - dt.timedelta(days=90), None)],
                                      "customer_id string, country string, valid_from timestamp, valid_to timestamp")
    labels = spark.createDataFrame([], SILVER_LABELS_SCHEMA)
    for view in cfg.features.views.values():
        feature_rows(SOURCES[view.source](txns, customers, labels), view).write.format("delta").save(cfg.table(view.table).path)
    events = txns.select("txn_id", "customer_id", "merchant_id", "event_time", "amount_eur", "channel",
                         "merchant_category", "country")
    offline = {r["txn_id"]: r for r in point_in_time_features(cfg, events).collect()}
    stream = {r["txn_id"]: r for r in features_as_of(cfg, events, txns, customers, labels).collect()}
    assert offline["T0"]["txn_count_1h"] is None and offline["T0"]["amount_vs_30d_avg"] is None  # nothing before it
    assert offline["T1"]["txn_count_1h"] == offline["T2"]["txn_count_1h"] == 1  # not itself, not its twin
    assert offline["T1"]["avg_amount_30d"] == 10.0 and offline["T1"]["amount_vs_30d_avg"] == 2.0
    assert offline["T3"]["txn_count_1h"] == 3 and offline["T3"]["merchant_txn_count_24h"] == 3  # as of T0+30min
    assert offline["T3"]["event_time"] == times[3] and offline["T3"]["hour_of_day"] == 12  # its own time
    columns = [f.name for v in cfg.features.views.values() for f in v.features] + ["amount_vs_30d_avg", "event_time"]
    assert {k: [r[c] for c in columns] for k, r in offline.items()} == {k: [r[c] for c in columns] for k, r in stream.items()}


def test_the_point_in_time_join_keeps_feasts_rule_at_its_edges(spark, tmp_path):
    """Given a customer's feature rows 31 days, 1 day and exactly 1 microsecond before three events (the
    view's ttl is 30 days) and an event before any row, each event gets what Feast's own join gives it:
    nothing past the ttl or before the first row, the row at the very instant asked for."""
    from features.serving import BEFORE, feast_point_in_time_features, point_in_time_features

    cfg = load_config("local", root=tmp_path)
    customer, merchant = cfg.features.views["customer_features"], cfg.features.views["merchant_features"]
    assert customer.ttl_days == 30
    rows = [("C1", T0 - dt.timedelta(days=31), 1.0), ("C1", T0 + dt.timedelta(days=1), 2.0),
            ("C1", T0 + dt.timedelta(days=5) - BEFORE, 3.0), ("C2", T0, 9.0)]
    columns = ", ".join(f"{f.name} {'long' if f.dtype == 'int64' else 'double'}" for f in customer.features)
    spark.createDataFrame([(c, t, *[v if f.name == "avg_amount_30d" else None for f in customer.features])
                           for c, t, v in rows], f"customer_id string, event_time timestamp, {columns}"
                          ).write.format("delta").save(cfg.table(customer.table).path)
    spark.createDataFrame([("M1", T0 - dt.timedelta(days=90), 1, 0.0)],
                          "merchant_id string, event_time timestamp, merchant_txn_count_24h long, "
                          "merchant_fraud_rate_30d double").write.format("delta").save(cfg.table(merchant.table).path)
    events = spark.createDataFrame(
        [("E1", "C1", "M1", T0 - dt.timedelta(days=32), 10.0, "pos", "food", "DE"),  # before any row
         ("E2", "C1", "M1", T0 + dt.timedelta(hours=1), 10.0, "pos", "food", "DE"),  # the 31-day-old row: past the ttl
         ("E3", "C1", "M1", T0 + dt.timedelta(days=3), 10.0, "pos", "food", "DE"),
         ("E4", "C1", "M1", T0 + dt.timedelta(days=5), 10.0, "pos", "food", "DE"),  # a row 1 microsecond before
         ("E5", "C1", "M1", T0 + dt.timedelta(days=5), 20.0, "web", "food", "DE"),  # its twin
         ("E6", "C3", "M1", T0, 10.0, "pos", "food", "DE")],  # an entity with no rows
        "txn_id string, customer_id string, merchant_id string, event_time timestamp, amount_eur double, "
        "channel string, merchant_category string, country string")
    ours = {r["txn_id"]: r.asDict() for r in point_in_time_features(cfg, events).collect()}
    assert {k: r["avg_amount_30d"] for k, r in ours.items()} == {"E1": None, "E2": None, "E3": 2.0, "E4": 3.0,
                                                                 "E5": 3.0, "E6": None}
    assert all(r["merchant_txn_count_24h"] is None for r in ours.values())  # 90 days old: past the ttl
    assert ours == {r["txn_id"]: r.asDict() for r in feast_point_in_time_features(cfg, events).collect()}


@pytest.fixture(scope="module")
def featured(spark, lake):
    """Given the shared lakehouse, when features are computed, joined to labels and materialized."""
    compute_features(spark, lake.cfg)
    build_training_set(spark, lake.cfg)
    materialize_online(spark, lake.cfg)
    return lake


def test_a_training_set_takes_only_rows_with_a_full_window_of_history(spark, demo_lake, featured):
    # Given the demo's 30 days of warm-up history before its start date, the training set starts on it
    start = dt.date.fromisoformat(demo_lake.cfg.generator.start_date)
    training = read_table(spark, demo_lake.cfg.table("features.training_set"))
    assert training.agg(F.min(F.to_date("event_time"))).first()[0] == start
    # and with only four days of history, a 30-day window is never full: the job says so, writes nothing
    cfg = featured.cfg.model_copy(update={"features": featured.cfg.features.model_copy(update={"mature_after_days": None})})
    before = read_table(spark, cfg.table("features.training_set")).count()
    with pytest.raises(HistoryTooShort, match="4 day"):
        build_training_set(spark, cfg, force=True)  # its inputs did not change since the fixture's run
    assert read_table(spark, cfg.table("features.training_set")).count() == before


def _recompute_from_silver(spark, cfg, customer, at):
    txns = read_table(spark, cfg.table("silver.transactions")).where(F.col("customer_id") == customer)
    week = txns.where((F.col("event_time") > at - dt.timedelta(days=7)) & (F.col("event_time") <= at))
    month = txns.where((F.col("event_time") > at - dt.timedelta(days=30)) & (F.col("event_time") <= at))
    return {"txn_count_7d": week.count(), "max_amount_30d": month.agg(F.max("amount_eur")).first()[0]}


def test_online_equals_offline_equals_a_recomputation_from_silver(spark, featured):
    cfg = featured.cfg
    offline = read_table(spark, cfg.table("features.customer_features"))
    latest = (offline.groupBy("customer_id").agg(F.max("event_time").alias("event_time"))
              .join(offline, ["customer_id", "event_time"]).orderBy("customer_id").limit(5).collect())
    online = online_features(cfg, "customer_id", [r["customer_id"] for r in latest])
    for i, row in enumerate(latest):
        for name in ("txn_count_7d", "max_amount_30d", "avg_amount_30d", "distinct_merchants_7d"):
            assert online[name][i] == pytest.approx(row[name]), (row["customer_id"], name)
        plain = _recompute_from_silver(spark, cfg, row["customer_id"], row["event_time"])
        assert row["txn_count_7d"] == plain["txn_count_7d"]
        assert row["max_amount_30d"] == pytest.approx(plain["max_amount_30d"])


def test_every_labelled_transaction_gets_what_feasts_own_point_in_time_join_gives_it(spark, featured):
    """Given the shared lake's offline feature tables and its labelled transactions (the training set's
    rows), the point-in-time join gives each the same features as Feast's get_historical_features."""
    from features.serving import feast_point_in_time_features, point_in_time_features
    from features.training_set import label_events

    cfg = featured.cfg
    events = label_events(read_table(spark, cfg.table("silver.transactions")), read_table(spark, cfg.table("silver.labels")))
    ours = point_in_time_features(cfg, events)
    assert ours.count() == events.count() > 100
    assert ours.where(F.col("avg_amount_30d").isNotNull()).count() > events.count() / 2
    assert same_rows(ours, feast_point_in_time_features(cfg, events).select(*ours.columns))


def test_an_online_read_gives_what_feasts_own_lookup_gives_and_names_a_missing_feature(spark, featured):
    cfg = featured.cfg
    store = feature_store(cfg, apply=False)
    customers = [r[0] for r in read_table(spark, cfg.table("features.customer_features"))
                 .select("customer_id").distinct().orderBy("customer_id").limit(20).collect()] + ["C-no-such"]
    ours = online_features(cfg, "customer_id", customers, store=store, timestamps=True)
    theirs = store.get_online_features(features=feature_refs(cfg, ["customer_features"]),
                                       entity_rows=[{"customer_id": c} for c in customers]
                                       ).to_dict(include_event_timestamps=True)
    assert ours == {k: v for k, v in theirs.items() if k != "customer_id__ts"}
    assert ours["txn_count_7d"][-1] is None and ours["txn_count_7d__ts"][-1] == 0
    with pytest.raises(ConfigError, match="no feature txn_count_8d"):
        online_features(cfg, "customer_id", customers[:1], ["txn_count_8d"], store=store)


def test_training_set_has_one_row_per_labelled_transaction_and_records_versions(spark, featured):
    cfg = featured.cfg
    training = read_table(spark, cfg.table("features.training_set"))
    labelled = read_table(spark, cfg.table("silver.labels")).join(
        read_table(spark, cfg.table("silver.transactions")), "txn_id").count()
    assert training.count() == labelled == training.select("txn_id").distinct().count()
    assert {"is_fraud", "txn_count_24h", "merchant_fraud_rate_30d", "amount_vs_30d_avg", "hour_of_day"} <= set(training.columns)
    run = read_table(spark, cfg.table("meta.lineage")).where("job = 'build_training_set'").first()
    inputs = {i["table"]: i["version"] for i in run["inputs"]}
    for table in ("silver.labels", "features.customer_features", "features.merchant_features"):
        assert inputs[table] == current_version(spark, cfg.table(table))


def test_merchant_fraud_rate_only_counts_labels_already_known(spark, featured):
    """A training row sees the merchant as of its latest event strictly before the transaction (a
    transaction or a label's arrival): the fraud rate counts exactly the labels known by then."""
    cfg = featured.cfg
    training = read_table(spark, cfg.table("features.training_set"))
    txns = read_table(spark, cfg.table("silver.transactions"))
    labels = read_table(spark, cfg.table("silver.labels")).join(txns.select("txn_id", "merchant_id"), "txn_id")
    row = training.where("merchant_fraud_rate_30d IS NOT NULL").orderBy("event_time").first()
    mine = (F.col("merchant_id") == row["merchant_id"])
    as_of = max(t for t in (txns.where(mine & (F.col("event_time") < row["event_time"])).agg(F.max("event_time")).first()[0],
                            labels.where(mine & (F.col("label_time") < row["event_time"])).agg(F.max("label_time")).first()[0])
                if t is not None)
    known = labels.where(mine & (F.col("label_time") <= as_of) & (F.col("label_time") > as_of - dt.timedelta(days=30)))
    assert known.count() > 0 and known.agg(F.max("label_time")).first()[0] < row["event_time"]
    assert row["merchant_fraud_rate_30d"] == pytest.approx(known.agg(F.avg(F.col("is_fraud").cast("double"))).first()[0])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    url: str
    proc: subprocess.Popen


@pytest.fixture
def redis_server():
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: `make setup` installs it (Debian package redis-server)")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield RedisServer(f"127.0.0.1:{port}", proc)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_reruns_do_not_duplicate_and_new_data_reaches_the_online_store(spark, tmp_path, store, request):
    overrides = {"features": {"online_store": store}}
    if store == "redis":
        overrides["features"].update(redis_url=request.getfixturevalue("redis_server").url, redis_timeout_seconds=1)
    cfg = load_config("local", root=tmp_path, overrides=overrides)
    generate(cfg.landing_dir, seed=31, rows=600, days=2, start_date="2026-07-01")
    run_pipeline(spark, cfg)
    compute_features(spark, cfg)
    materialize_online(spark, cfg)
    table = cfg.table("features.customer_features")
    rows, version = read_table(spark, table).count(), current_version(spark, table)

    compute_features(spark, cfg)  # nothing new: no new version, no duplicate rows
    assert current_version(spark, table) == version and read_table(spark, table).count() == rows
    assert read_table(spark, table).select("customer_id", "event_time").distinct().count() == rows

    customer = read_table(spark, table).orderBy(F.desc("txn_count_7d")).first()["customer_id"]
    before = online_features(cfg, "customer_id", [customer])["txn_count_7d"][0]
    extra = tmp_path / "extra"
    generate(extra, seed=31, rows=900, days=3, start_date="2026-07-01", defect_rate=0.0)
    shutil.copytree(extra / "batch-2026-07-03", cfg.landing_dir / "batch-2026-07-03")
    run_pipeline(spark, cfg)
    compute_features(spark, cfg)
    materialize_online(spark, cfg)
    offline = read_table(spark, table).where(F.col("customer_id") == customer)
    newest = offline.orderBy(F.desc("event_time")).first()
    assert newest["event_time"].date() == dt.date(2026, 7, 3)
    after = online_features(cfg, "customer_id", [customer])["txn_count_7d"][0]
    assert after == newest["txn_count_7d"] and after != before
    # When the online store is lost (its SQLite file deleted, Redis flushed), then the next
    # materialization refills it, though no offline table changed
    if store == "redis":
        import redis
        host, port = cfg.features.redis_url.split(":")
        redis.Redis(host=host, port=int(port)).flushall()
    else:
        (feast_dir(cfg) / "online.db").unlink()
    materialize_online(spark, cfg)
    assert online_features(cfg, "customer_id", [customer])["txn_count_7d"][0] == after
    if store == "redis":
        # When Redis stops answering (SIGSTOP: its socket stays open, no reply comes)
        server = request.getfixturevalue("redis_server")
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(OnlineStoreUnavailable, match=r"did not answer \(timeout 1s a try\)"):
                online_features(cfg, "customer_id", [customer])
            waited = time.monotonic() - started
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # Then the lookup fails in bounded time (redis-py tries 4 times with backoff), not never,
        # and answers again once Redis does
        assert waited < 30
        assert online_features(cfg, "customer_id", [customer])["txn_count_7d"][0] == after


def test_in_an_env_reading_files_the_online_stream_follows_silver_with_the_offline_tables_latest_rows(spark, tmp_path):
    """Given a lakehouse fed by landing files, when stream_online runs (silver's Delta stream), then each
    customer's and merchant's online row is its latest offline feature row; a rerun reads nothing new."""
    from features.online_stream import stream_online

    cfg = load_config("local", root=tmp_path)
    with pytest.raises(Exception, match="silver.transactions does not exist yet"):
        stream_online(spark, cfg)
    generate(cfg.landing_dir, seed=13, rows=500, days=2, start_date="2026-08-01")
    run_pipeline(spark, cfg)
    run = stream_online(spark, cfg)
    assert run.metrics["rows"] == read_table(spark, cfg.table("silver.transactions")).count()
    compute_features(spark, cfg)  # the offline tables, written after the stream and never materialized
    for view in cfg.features.views.values():
        offline = read_table(spark, cfg.table(view.table))
        latest = (offline.groupBy(view.key).agg(F.max("event_time").alias("event_time"))
                  .join(offline, [view.key, "event_time"]).orderBy(view.key).collect())
        online = online_features(cfg, view.key, [r[view.key] for r in latest])
        for f in view.features:
            expected = [r[f.name] for r in latest]
            assert all((a is None) == (b is None) and (a is None or a == pytest.approx(b))
                       for a, b in zip(online[f.name], expected)), (f.name, online[f.name][:5], expected[:5])
    assert stream_online(spark, cfg).metrics.get("rows", 0) == 0


def test_the_features_service_started_before_the_first_refine_waits_for_silver(tmp_path):
    """`services start` before the demo: the online stream counts as running, waiting for silver, and stops."""
    import json

    from conftest import tidewater_in_process

    started = tidewater_in_process(["services", "start", "features", "--root", str(tmp_path)])
    try:
        assert started.returncode == 0, started.stderr
        status = json.loads((tmp_path / "streams" / "stream_online" / "status.json").read_text())
        assert status["state"] == "running" and status["waiting_for"] == "silver.transactions"
    finally:
        stopped = tidewater_in_process(["services", "stop", "features", "--root", str(tmp_path)])
    assert "features: stopped" in stopped.stdout
