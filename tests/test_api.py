"""Given the demo lakehouse with its features in Redis, when `tidewater services start redis api` runs
the scoring API on loopback, then one transaction gets a decision with reason codes in milliseconds,
the same score batch scoring gives for the same feature values, and bad input, an online store that
went away and a moved champion alias are each handled without a 500 or a dropped request."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from conftest import DEMO_ENV, conf_env, tidewater_in_process
from lakehouse import audit
from lakehouse.config import _deep_merge, load_config
from lakehouse.delta_reader import read_rows
from lakehouse.model_store import alias_version, model_name
from lakehouse.refine import with_amount_eur
from lakehouse.tables import current_version, read_table
from features.serving import with_context
from registry import contract
from registry.client import registry_client
from registry.contract import resolve
from lakehouse.tokens import client_token, server_tokens
from scoring.explain import Explainer, descriptions
from scoring.predictions import score
from scoring.routing import SALT, canary_bucket
from scoring.spark_hash import spark_xxhash64

SCORE_TOLERANCE = 1e-6
API_PORT, REDIS_PORT = 18000, 16380


class Api:
    def __init__(self, cfg, env, root, conf_dir):
        self.cfg, self.env, self.root, self.conf_dir = cfg, env, root, conf_dir
        self.url = f"http://127.0.0.1:{API_PORT}"

    def tidewater(self, *args: str) -> str:
        result = tidewater_in_process([*args, "--env", self.env, "--root", str(self.root),
                                       "--conf-dir", str(self.conf_dir)])
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr  # progress lines go to stderr

    def call(self, path: str, body=None, raw: bytes | None = None, token: str | None = "") -> tuple[int, dict | str]:
        """A request as a caller with the API's local token (`token=None`: without one)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        token = client_token(self.cfg) if token == "" else token
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status, text = reply.status, reply.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text


@pytest.fixture(scope="module")
def api(demo_lake):
    """The demo lake's features materialized into Redis, and the API serving its champion."""
    env = "apitest"
    overrides = _deep_merge(DEMO_ENV, {
        "features": {"online_store": "redis", "redis_url": f"127.0.0.1:{REDIS_PORT}", "redis_timeout_seconds": 1},
        "services": {"redis": {"port": REDIS_PORT}, "api": {"port": API_PORT, "reload_seconds": 1}}})
    conf = conf_env(demo_lake.root, env, overrides)
    a = Api(load_config(env, root=demo_lake.root, conf_dir=conf), env, demo_lake.root, conf)
    a.tidewater("services", "start", "redis")
    a.tidewater("run", "materialize_online")
    a.tidewater("services", "start", "api")
    yield a
    a.tidewater("services", "stop", "api", "redis")


def _recent(cfg, n: int) -> list[dict]:
    """The last n silver transactions: their customers and merchants have online feature rows."""
    rows = read_rows(cfg, "silver.transactions",
                     columns=["txn_id", "customer_id", "merchant_id", "event_time", "amount", "currency",
                              "channel", "merchant_category", "country"])
    return sorted(rows, key=lambda r: r["event_time"])[-n:]


def _request(row: dict, **changes) -> dict:
    body = {**row, "event_time": row["event_time"].isoformat()}
    return {**body, **changes}


def test_no_token_no_score_and_every_call_is_audited(api):
    """A call without a token, or with an unknown one, is refused with a hint; the log names each caller."""
    txn = _request(_recent(api.cfg, 1)[0])
    for token in (None, "0" * 32):
        status, reply = api.call("/v1/score", txn, token=token)
        assert status == 401 and "bearer token" in reply["detail"] and "Authorization" in reply["hint"]
    asked = dt.datetime.now(dt.timezone.utc)
    status, reply = api.call("/v1/score", txn)
    assert status == 200
    caller = next(iter(server_tokens(api.cfg).values()))
    deadline = time.time() + 15
    while time.time() < deadline:
        rows = [r for r in audit.read(api.cfg, since=asked - dt.timedelta(seconds=30), limit=10_000)
                if r["surface"] == "api"]
        if any(r["outcome"] == "ok" and r["at"] >= asked for r in rows):
            break
        time.sleep(0.5)
    ok = [r for r in rows if r["outcome"] == "ok" and r["at"] >= asked]
    assert ok and ok[0]["actor"] == caller and ok[0]["action"] == "POST /v1/score"
    assert ok[0]["detail"] == "1 transaction(s)" and txn["txn_id"] not in json.dumps(rows, default=str)
    assert ok[0]["models"] == [f"{reply['model']['name']} v{reply['model']['version']}"]
    assert sum(r["outcome"] == "denied" and r["actor"] == "anonymous" for r in rows) >= 2


def test_curl_on_score_returns_a_decision_with_reason_codes(api):
    """One transaction: score, decision at the champion's own threshold, reasons in words, as-of times."""
    txn = _recent(api.cfg, 1)[0]
    done = subprocess.run(["curl", "-s", "-X", "POST", f"{api.url}/v1/score", "-H", "Content-Type: application/json",
                           "-H", f"Authorization: Bearer {client_token(api.cfg)}", "-d", json.dumps(_request(txn))],
                          capture_output=True, text=True, timeout=30)
    reply = json.loads(done.stdout)
    champion = resolve(api.cfg, contract.CHAMPION)
    assert reply["txn_id"] == txn["txn_id"] and 0 <= reply["score"] <= 1
    assert reply["model"] == {"name": champion.name, "version": champion.version, "alias": "champion"}
    assert reply["route"] == "champion" and reply["threshold"] == champion.threshold
    assert reply["decision"] == (reply["score"] >= champion.threshold)
    assert len(reply["reasons"]) == api.cfg.scoring.reasons
    words = descriptions(api.cfg)
    for reason in reply["reasons"]:
        assert reason["feature"] in champion.inputs and reason["text"].startswith(words[reason["feature"]])
    assert set(reply["features_as_of"]) == set(api.cfg.features.views)
    assert all(reply["features_as_of"].values())
    assert reply["latency_ms"]["total"] >= reply["latency_ms"]["features"] + reply["latency_ms"]["model"]


def test_the_api_scores_as_batch_scoring_does_for_the_same_feature_values(spark, api):
    """The API's request-time inputs equal Spark's formulas, and its scores equal batch scoring's
    pandas UDF on the same feature values to 1e-6, with the same decisions."""
    txns = _recent(api.cfg, 40)
    status, reply = api.call("/v1/score/batch", {"transactions": [_request(t) for t in txns]})
    assert status == 200, reply
    results = reply["results"]
    model = resolve(api.cfg, contract.CHAMPION)
    fields = [T.StructField("txn_id", T.StringType()), T.StructField("customer_id", T.StringType()),
              T.StructField("merchant_id", T.StringType()), T.StructField("event_time", T.TimestampType()),
              T.StructField("amount", T.DoubleType()), T.StructField("currency", T.StringType()),
              *[T.StructField(c, T.DoubleType()) for c in model.numeric],
              *[T.StructField(c, T.StringType()) for c in model.categorical]]
    rows = [(t["txn_id"], t["customer_id"], t["merchant_id"], t["event_time"], t["amount"], t["currency"],
             *[None if r["features"][c] is None else float(r["features"][c]) for c in model.numeric],
             *[r["features"][c] for c in model.categorical]) for t, r in zip(txns, results)]
    frame = spark.createDataFrame(rows, T.StructType(fields))

    context = ["amount_eur", "hour_of_day", "amount_vs_30d_avg"]
    recomputed = with_context(with_amount_eur(frame.drop(*context), api.cfg.currencies))
    spark_inputs = {r["txn_id"]: r for r in recomputed.select("txn_id", *context).collect()}
    for r in results:
        assert [r["features"][c] for c in context] == [spark_inputs[r["txn_id"]][c] for c in context], r["txn_id"]

    batch = {p["txn_id"]: p for p in score(frame, model, api.cfg, "api-parity", "champion").collect()}
    assert len(batch) == len(results) == 40
    for r in results:
        assert abs(r["score"] - batch[r["txn_id"]]["score"]) <= SCORE_TOLERANCE, r["txn_id"]
        assert int(r["decision"]) == batch[r["txn_id"]]["decision"]


def test_reason_codes_add_up_to_the_gap_from_a_typical_transaction(api):
    """Integrated gradients: per row, the attributions sum to logit(row) - logit(typical) (completeness)."""
    import mlflow.pyfunc
    import pandas as pd

    from registry.inputs import conform

    champion = resolve(api.cfg, contract.CHAMPION)
    explainer = Explainer(mlflow.pyfunc.load_model(champion.path).unwrap_python_model(), descriptions(api.cfg))
    _, reply = api.call("/v1/score/batch", {"transactions": [_request(t) for t in _recent(api.cfg, 20)]})
    frame = conform(pd.DataFrame([r["features"] for r in reply["results"]]), champion.numeric, champion.categorical)
    sums, gaps = explainer.attributions(frame).sum(axis=1), explainer.gap(frame)
    for s, g in zip(sums, gaps):  # a Riemann sum over a ReLU network: close, not exact
        assert abs(s - g) <= 0.05 * max(1.0, abs(g)), (s, g)
    top = reply["results"][0]["reasons"]
    assert [x["attribution"] > 0 for x in top] == sorted([x["attribution"] > 0 for x in top], reverse=True)


BAD = [
    ("malformed JSON", None, b'{"txn_id": "T1", ', "json_invalid"),
    ("a missing field", {"customer_id": None}, None, "customer_id"),
    ("a wrong type", {"amount": "twelve"}, None, "amount"),
    ("a NaN amount", None, "nan", "amount"),
    ("a negative amount", {"amount": -5.0}, None, "quality.negative_amount"),
    ("an unknown channel", {"channel": "carrier_pigeon"}, None, "quality.channel_known"),
    ("an unknown currency", {"currency": "XXX"}, None, "quality.unknown_currency"),
    ("a country that is not ISO alpha-2", {"country": "Narnia"}, None, "quality.country_iso2"),
    ("a bad timestamp", {"event_time": "yesterday"}, None, "event_time"),
]


@pytest.mark.parametrize("what,changes,raw,names", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_422_naming_the_field(api, what, changes, raw, names):
    txn = _request(_recent(api.cfg, 1)[0])
    if raw == "nan":
        raw = json.dumps({**txn, "amount": float("nan")}).encode()  # Python writes NaN; JSON has no such number
    elif changes:
        txn = {k: v for k, v in {**txn, **changes}.items() if v is not None}
    status, reply = api.call("/v1/score", txn, raw=raw)
    assert status == 422, reply
    assert any(names in (e["type"], *map(str, e["loc"])) for e in reply["detail"]), reply


def test_oversized_requests_and_batches_are_refused_and_counted_and_the_api_stays_up(api):
    assert api.call("/v1/score", raw=b"{")[0] == 422
    big = _request(_recent(api.cfg, 1)[0], merchant_category="x" * (api.cfg.services.api.max_body_bytes + 10))
    assert api.call("/v1/score", big)[0] == 413
    many = [_request(_recent(api.cfg, 1)[0])] * (api.cfg.services.api.max_batch + 1)
    status, reply = api.call("/v1/score/batch", {"transactions": many})
    assert status in (413, 422), reply
    status, metrics = api.call("/metrics")
    assert status == 200
    assert 'tidewater_api_rejected_total{reason="too_large"}' in metrics
    assert 'tidewater_api_rejected_total{reason="invalid_request"}' in metrics
    assert 'tidewater_api_requests_total{path="/v1/score",status="422"}' in metrics
    assert 'status="500"' not in metrics
    assert f'tidewater_api_model_version{{route="champion"}} {float(resolve(api.cfg, "champion").version)}' in metrics
    assert api.call("/healthz")[0] == 200


def test_the_python_route_hash_is_sparks_xxhash64(spark):
    keys = ["", "C00042", "x" * 31, "y" * 32, "z" * 33, "ünïcode-ключ", "C" * 100]
    frame = spark.createDataFrame([(k,) for k in keys], "k string")
    hashed = frame.select("k", F.xxhash64(F.lit(SALT), "k").alias("h")).collect()
    assert [spark_xxhash64(SALT, r.k) for r in hashed] == [r.h for r in hashed]


def test_the_openapi_document_describes_both_score_endpoints(api):
    status, doc = api.call("/openapi.json")
    assert status == 200 and {"/v1/score", "/v1/score/batch", "/healthz", "/metrics"} <= set(doc["paths"])
    assert {"txn_id", "amount", "currency", "event_time"} <= set(doc["components"]["schemas"]["Transaction"]["properties"])


def test_services_status_prints_the_api_address(api):
    out = api.tidewater("services", "status", "api")
    assert f"http://127.0.0.1:{API_PORT}/v1/score" in out and "ready" in out


def test_online_store_down_is_a_503_with_a_hint_and_the_api_recovers_by_itself(api):
    txn = _request(_recent(api.cfg, 1)[0])
    api.tidewater("services", "stop", "redis")
    try:
        status, reply = api.call("/v1/score", txn)
        assert status == 503 and "online store" in reply["detail"] and reply["hint"], reply
    finally:
        api.tidewater("services", "start", "redis")  # its append-only file brings the features back
    deadline = time.time() + 15
    while (answer := api.call("/v1/score", txn))[0] != 200 and time.time() < deadline:
        time.sleep(0.5)
    status, reply = answer
    assert status == 200 and all(reply["features_as_of"].values()), reply


def test_a_canary_decides_for_the_keys_sparks_routing_gives_it_and_a_moved_alias_drops_no_request(spark, api):
    """Given a canary alias, the API routes each customer as scoring.routing's Spark hash does; while the
    aliases move and move back, every request in flight is answered 200."""
    client, name = registry_client(api.cfg), model_name(api.cfg)
    champion = alias_version(api.cfg, contract.CHAMPION)
    answers, stop = [], threading.Event()
    txns = _recent(api.cfg, 60)

    def traffic():
        while not stop.is_set():
            answers.append(api.call("/v1/score", _request(txns[len(answers) % len(txns)]))[0])

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        client.set_registered_model_alias(name, contract.CANARY, str(champion))
        deadline = time.time() + 60
        while api.call("/healthz")[1].get("canary") != champion and time.time() < deadline:
            time.sleep(0.5)
        status, reply = api.call("/v1/score/batch", {"transactions": [_request(t) for t in txns]})
        assert status == 200, reply
        keys = spark.createDataFrame([(t["customer_id"],) for t in txns], "customer_id string")
        spark_canary = {r.customer_id for r in keys.where(canary_bucket(api.cfg)).collect()}
        routed = {t["customer_id"]: r["route"] for t, r in zip(txns, reply["results"])}
        assert spark_canary and {k for k, route in routed.items() if route == "canary"} == spark_canary
    finally:
        client.delete_registered_model_alias(name, contract.CANARY)
        deadline = time.time() + 60
        while api.call("/healthz")[1].get("canary") is not None and time.time() < deadline:
            time.sleep(0.5)
        stop.set()
        sender.join()
    assert answers and set(answers) == {200}, sorted(set(answers))


def test_every_answered_decision_reaches_gold_decisions_online_once_through_a_killed_api(api):
    """Given decisions answered before and after the API is killed (-9) mid-traffic and restarted, when
    record_decisions runs twice, then each answered decision is one row of gold.decisions_online."""
    import os
    import signal

    txns = _recent(api.cfg, 30)
    answered = []

    def send(rows):
        for t in rows:
            status, reply = api.call("/v1/score", _request(t))
            if status == 200:
                answered.append(reply["decision_id"])

    send(txns[:20])
    pid = json.loads((api.root / "services" / "api" / "api.pid").read_text())["pid"]
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    send(txns[20:])  # some of these meet a dead server: not answered, not counted
    killer.join()
    with contextlib.suppress(psutil.NoSuchProcess):  # SIGKILL lands asynchronously: until then it listens
        psutil.Process(pid).wait(timeout=10)
    api.tidewater("services", "start", "api")
    send(txns[:10])

    first = api.tidewater("run", "record_decisions")
    again = api.tidewater("run", "record_decisions")
    rows = read_rows(api.cfg, "gold.decisions_online")
    ids = [r["decision_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a decision was recorded twice"
    assert set(answered) <= set(ids) and len(answered) >= 30
    assert " 0 new -> gold.decisions_online" in again, again
    by_id = {r["decision_id"]: r for r in rows}
    sample = by_id[answered[0]]
    assert sample["txn_id"] == txns[0]["txn_id"] and sample["reasons"] and sample["route"] == "champion"
    assert "closed files removed" in first
    assert not [p for p in (api.root / "services" / "api" / "decisions").glob("*") if str(pid) in p.name]


def test_an_online_decision_joins_the_predictions_monitoring_reads_and_says_who_decided(spark, api):
    """Given a transaction only the API scored, when record_decisions has run, then monitoring's
    predictions (drift, live performance) hold it with the API's score and inputs, and
    `tidewater models decided` names the version and route that decided it."""
    from monitoring.current import current_predictions

    cfg = api.cfg
    status, reply = api.call("/v1/score", _request(_recent(cfg, 1)[0], txn_id="T-ONLINE-ONLY"))
    assert status == 200, reply
    api.tidewater("run", "record_decisions")

    def read(name):
        return read_table(spark, cfg.table(name)) if current_version(spark, cfg.table(name)) is not None else None

    champion = (F.col("model_name") == cfg.training.model_name) & (F.col("model_alias") == contract.CHAMPION)
    [row] = current_predictions(cfg.drift.current_tables, read, champion).where("txn_id = 'T-ONLINE-ONLY'").collect()
    assert row["score"] == pytest.approx(reply["score"]) and row["model_version"] == reply["model"]["version"]
    assert row["inputs_numeric"]["amount_eur"] == reply["features"]["amount_eur"] and row["route"] == "champion"
    done = tidewater_in_process(["models", "decided", "T-ONLINE-ONLY", "--format", "json", "--env", api.env,
                                 "--root", str(api.root)], env={"TIDEWATER_CONF_DIR": str(api.conf_dir)})
    assert done.returncode == 0, done.stderr
    decided = json.loads(done.stdout)
    assert [(d["table"], d["model_version"], d["decided"]) for d in decided] == \
        [("gold.decisions_online", reply["model"]["version"], True)]


def test_the_api_builds_the_frame_registry_conform_builds():
    import pandas as pd

    from registry.inputs import conform
    from scoring.api import model_frame

    rows = [{"a": 1, "b": None, "c": "pos", "d": None}, {"a": 2.5, "b": 3, "c": None, "d": "atm"}]
    pd.testing.assert_frame_equal(model_frame(rows, ["a", "b"], ["c", "d"]), conform(pd.DataFrame(rows), ["a", "b"], ["c", "d"]))
