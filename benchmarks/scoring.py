"""Side-by-side figures on one demo root (issue 15): each Tidewater figure next to its peer, and the ratio.

    .venv/bin/tidewater demo --root /tmp/sbs-demo
    .venv/bin/python benchmarks/scoring.py --root /tmp/sbs-demo --json benchmarks/results/scoring.json

In one process, one Spark session, on the same data:
- batch scoring: the score_batch job run through the job runner (as `tidewater run score_batch --since
  D1 --until D2` runs it: Feast's point-in-time join, the model in a pandas UDF, MERGE into
  gold.predictions) over the days of the champion's batch predictions (`--days`: the last N only),
  against the same model version, resolved through the registry contract (registry.contract.resolve),
  loaded with mlflow.pyfunc and predicting in this process on the same rows' inputs (the ones the job
  recorded in gold.predictions) as one pandas frame, conformed as the UDF conforms them. Rows/s both;
  the peer does no feature join, no read and no write: it is the model's own ceiling. Its scores are
  checked against the job's.
- drift: the detect_drift job against one plain scan of its inputs: every table the job read, at the
  version it read (the training set at the model's version, the scoring tables, silver.labels), its
  compared columns (the job's own `compared_features`/`current_rows` selection) read once and reduced
  in one pass (count(*) and max of every column: every value is read). A bare count is not the scan:
  Delta answers it from the log's statistics without reading a column. The job also scores the
  training set with the model; the scan does not. Goal: drift within 3x of the scan.
- online lookups: benchmarks/features.py's lookup_seconds (Feast get_online_features through
  features.store.online_features, 1 entity and 100 entities per call, in-process) against the same
  SELECT Feast's SQLite store runs, straight on online.db with the keys serialized beforehand (the
  store's read alone, rows not decoded). Goal: 100 entities p99 under 3 ms.

The jobs write to the root (a rescore MERGE, drift rows, lineage), so use a scratch demo root.
Not run here (other environments or a running stream): streaming end to end latency and events/s is
benchmarks/stream_scoring.py; Petastorm vs the in-memory loader is benchmarks/training.py (.venv-train).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from lakehouse.config import load_config  # noqa: E402
from lakehouse.errors import TidewaterError, describe as describe_error  # noqa: E402
from lakehouse.job_runner import find_job  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from lakehouse.tables import read_table  # noqa: E402
from monitoring.drift_job import compared_features, current_rows  # noqa: E402
from registry.contract import resolve  # noqa: E402
from scoring.frames import backend, conform  # noqa: E402
from scoring.routing import describe, routes  # noqa: E402

GOALS = {"drift": 3.0, "lookup_100_p99_ms": 3.0}


def _benchmark_module(name: str):
    """A sibling benchmark script as a module (benchmarks/ is not a package; features/ is taken)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _q(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100)[p - 1]


def batch_scoring(spark, cfg, days: int | None) -> dict:
    """score_batch over the champion's batch days vs the same model's predict on the same inputs."""
    import mlflow.pyfunc

    model = resolve(cfg)
    mine = (read_table(spark, cfg.table("gold.predictions"))
            .where((F.col("model_name") == model.name) & (F.col("model_alias") == model.alias)
                   & (F.col("route") == model.alias)))
    last = mine.agg(F.max(F.to_date("event_time"))).first()[0]
    if last is None:
        raise SystemExit(f"error: no {model.name}@{model.alias} rows in gold.predictions under {cfg.root}; "
                         "run `tidewater demo --root DIR` first")
    since = last - dt.timedelta(days=days - 1) if days else mine.agg(F.min(F.to_date("event_time"))).first()[0]
    started = time.perf_counter()
    run = find_job("score_batch")(spark, cfg, since=since, until=last)
    job_s = time.perf_counter() - started
    scored = run.metrics.get("scored", 0)

    rows = (read_table(spark, cfg.table("gold.predictions"))
            .where((F.col("model_name") == model.name) & (F.col("model_alias") == model.alias)
                   & (F.col("route") == model.alias) & (F.col("model_version") == model.version)
                   & F.to_date("event_time").between(since, last))
            .select("score", *[F.col("inputs_numeric")[c].alias(c) for c in model.numeric],
                    *[F.col("inputs_categorical")[c].alias(c) for c in model.categorical]).toPandas())
    loaded, on = mlflow.pyfunc.load_model(model.path), backend(cfg.scoring.frame_backend)
    loaded.predict(conform(rows.head(100), model.numeric, model.categorical, on))  # first-call set-up
    times = []
    for _ in range(3):
        started = time.perf_counter()
        scores = loaded.predict(conform(rows, model.numeric, model.categorical, on))
        times.append(time.perf_counter() - started)
    predict_s = statistics.median(times)
    diff = float((rows["score"] - scores.to_numpy().ravel()).abs().max()) if len(rows) else 0.0
    return {"model": f"{model.name} v{model.version}", "routes": describe(routes(cfg)),
            "since": str(since), "until": str(last),
            "job_rows": scored, "job_s": job_s, "job_rows_per_s": scored / job_s,
            "predict_rows": len(rows), "predict_s": predict_s, "predict_rows_per_s": len(rows) / predict_s,
            "max_score_difference": diff}


def _scan(df: DataFrame) -> None:
    """One pass over every value of df's columns."""
    df.agg(F.count(F.lit(1)), *[F.max(c) for c in df.columns]).collect()


def drift(spark, cfg) -> dict:
    """detect_drift vs one scan of the inputs it read, at the versions it read."""
    model = resolve(cfg)
    numeric, categorical = compared_features(cfg, model)
    started = time.perf_counter()
    run = find_job("detect_drift")(spark, cfg, force=True)
    job_s = time.perf_counter() - started
    read = {t: v for t, v in run.inputs.items() if not t.startswith("model:")}

    def at(table: str) -> DataFrame:
        return read_table(spark, cfg.table(table), read[table])

    of_model = (F.col("model_name") == model.name) & (F.col("model_alias") == model.alias)
    ref_numeric = list(dict.fromkeys([*numeric, *model.numeric]))
    scans = []
    for table in read:
        if table in cfg.drift.current_tables:
            scans.append(current_rows(at(table).where(of_model), numeric, categorical))
        elif table == "silver.labels":
            scans.append(at(table).select("txn_id", "is_fraud"))
        else:  # the reference: the training set
            scans.append(at(table).select(*ref_numeric, *[c for c in dict.fromkeys([*categorical, *model.categorical])
                                                           if c not in ref_numeric]))
    started = time.perf_counter()
    for df in scans:
        _scan(df)
    scan_s = time.perf_counter() - started
    return {"tables": read, "job_s": job_s, "scan_s": scan_s,
            "windows": run.metrics.get("windows"), "metric_rows": run.metrics.get("metric_rows")}


def _store_read_seconds(cfg, customers: list[str], n: int, batches: int) -> tuple[list[float], list[float]]:
    """The SELECT Feast's SQLite online store runs for these keys, alone (keys serialized beforehand)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from features.store import feast_dir, view_for_entity

    name, _ = view_for_entity(cfg, "customer_id")
    keys = [serialize_entity_key(EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=c)]),
                                 entity_key_serialization_version=3) for c in customers]
    conn = sqlite3.connect(feast_dir(cfg) / "online.db")
    table = f"{cfg.features.project}_{name}"

    def read(chosen: list[bytes]) -> float:
        started = time.perf_counter()
        conn.execute(f'SELECT entity_key, feature_name, value, event_ts FROM "{table}" '
                     f'WHERE entity_key IN ({",".join("?" * len(chosen))}) ORDER BY entity_key', chosen).fetchall()
        return time.perf_counter() - started

    try:
        return [read([keys[i % len(keys)]]) for i in range(n)], [read(keys[:100]) for _ in range(batches)]
    finally:
        conn.close()


def lookups(spark, cfg, n: int) -> dict:
    """Online lookups of 1 and 100 entities (benchmarks/features.py) vs the store's own read."""
    if cfg.features.online_store != "sqlite":
        raise SystemExit("error: the lookup peer reads SQLite; this root's online store is "
                         f"{cfg.features.online_store}")
    bench = _benchmark_module("features")
    customers = bench.entity_sample(spark, cfg)
    if len(customers) < 100:
        raise SystemExit(f"error: {len(customers)} customers in features.customer_features; 100 are needed")
    batches = max(n // 2, 100)
    bench.lookup_seconds(cfg, customers, 100, 20)  # warm-up: the registry, the connection, first protos
    one, hundred = bench.lookup_seconds(cfg, customers, n, batches)
    store_one, store_hundred = _store_read_seconds(cfg, customers, n, batches)
    ms = {"tidewater_1": one, "tidewater_100": hundred, "store_1": store_one, "store_100": store_hundred}
    return {f"{k}_p{p}_ms": _q(v, p) * 1000 for k, v in ms.items() for p in (50, 99)} | {
        "lookups_1": n, "lookups_100": batches}


def _ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 100 else f"{x:,.0f}x"


def table_rows(figures: dict) -> list[tuple[str, str, str, str, str]]:
    """(figure, Tidewater, peer, ratio, goal) rows of the printed table."""
    b, d, lk = figures["batch_scoring"], figures["drift"], figures["online_lookups"]
    out = [("batch scoring rows/s: score_batch job vs model.predict in-process",
            f"{b['job_rows_per_s']:,.0f}", f"{b['predict_rows_per_s']:,.0f}",
            _ratio(b['predict_rows_per_s'] / b['job_rows_per_s']), ""),
           ("drift s: detect_drift job vs one scan of its inputs", f"{d['job_s']:.1f}", f"{d['scan_s']:.1f}",
            _ratio(d['job_s'] / d['scan_s']), f"<= {GOALS['drift']:g}x")]
    for n in (1, 100):
        for p in (50, 99):
            t, s = lk[f"tidewater_{n}_p{p}_ms"], lk[f"store_{n}_p{p}_ms"]
            goal = f"< {GOALS['lookup_100_p99_ms']:g} ms" if (n, p) == (100, 99) else ""
            out.append((f"online lookup {n} entit{'y' if n == 1 else 'ies'} p{p} ms: Feast vs its SQLite SELECT",
                        f"{t:.2f}", f"{s:.3f}", _ratio(t / s), goal))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="a demo root (`tidewater demo --root DIR`); the jobs write to it")
    parser.add_argument("--env", default=None, help="its env (default local or $TIDEWATER_ENV)")
    parser.add_argument("--days", type=int, default=None,
                        help="rescore only the last N days of the champion's batch predictions (default: all)")
    parser.add_argument("--lookups", type=int, default=2000, help="one-entity lookups; 100-entity: half as many")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if not Path(args.root).is_dir():
        raise SystemExit(f"error: {args.root} does not exist; create it with `tidewater demo --root {args.root}`")
    try:
        cfg = load_config(args.env, root=args.root)
        spark = build_session(cfg)
        figures = {"root": str(cfg.root), "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "cores": os.cpu_count(), "load_average_before": os.getloadavg()[0],
                   "batch_scoring": batch_scoring(spark, cfg, args.days), "drift": drift(spark, cfg),
                   "online_lookups": lookups(spark, cfg, args.lookups), "load_average_after": os.getloadavg()[0]}
    except TidewaterError as err:
        message, hint = describe_error(err)
        raise SystemExit(f"error: {message}" + (f" (hint: {hint})" if hint else "")) from None
    b, d = figures["batch_scoring"], figures["drift"]
    print(f"\nSide by side on {cfg.root}: {b['routes']}, {b['job_rows']} transactions scored "
          f"{b['since']}..{b['until']} "
          f"(predict: {b['predict_rows']} rows, max |score difference| {b['max_score_difference']:.2g}); "
          f"drift read {', '.join(f'{t}@v{v}' for t, v in d['tables'].items())}; {figures['cores']} cores, "
          f"1-minute load average {figures['load_average_before']:.1f} before, "
          f"{figures['load_average_after']:.1f} after")
    table = table_rows(figures)
    print("| figure | Tidewater | peer | ratio (Tidewater's time / the peer's) | goal |\n|---|---|---|---|---|")
    for r in table:
        print("| " + " | ".join(r) + " |")
    print("Not run here: streaming end to end latency and events/s: benchmarks/stream_scoring.py; "
          "Petastorm vs in-memory loader: benchmarks/training.py (.venv-train).")
    figures["table"] = [dict(zip(["figure", "tidewater", "peer", "ratio", "goal"], r)) for r in table]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")
    spark.stop()


if __name__ == "__main__":
    main()
