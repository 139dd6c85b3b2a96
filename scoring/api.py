"""The scoring API: one transaction in, a decision with reason codes out, in milliseconds.

`POST /v1/score`, `POST /v1/score/batch`, `GET /healthz`, `GET /metrics` (Prometheus text) and the
OpenAPI document at `/openapi.json` (`/docs` renders it). A request is scored with:
- features "as of" the online store: each entity's latest materialized feature row, which aggregates
  its transactions up to and including the last one the feature job saw (its time is returned per view
  as `features_as_of`), plus the inputs the request itself gives (scoring.api_request);
- the champion, or the live canary for its share of route keys (the same hash as Spark's routing);
- the model version's own threshold, and reason codes from scoring.explain.
Bad input is a 422 naming each field (counted in /metrics), an online store that does not answer a
503 with a hint; the API recovers by itself when the store is back. Every `services.api.reload_seconds`
it reads the champion and canary aliases; a moved alias is loaded beside the serving models and
swapped in with one assignment, so no request is dropped or sees half a deployment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass

import pandas as pd
from fastapi import FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel

from lakehouse.config import Config
from lakehouse.errors import TidewaterError
from lakehouse.model_store import alias_version
from features.store import TIMESTAMP_SUFFIX, OnlineStoreUnavailable, feature_store, online_features
from registry import contract
from registry.contract import ModelNotFound, ResolvedModel, resolve
from scoring.decision_log import DecisionLog
from scoring.api_auth import Callers
from scoring.api_request import Transaction, request_checks, request_inputs, violations
from scoring.explain import Explainer, descriptions
from scoring.routing import BUCKETS, SALT
from scoring.spark_hash import spark_xxhash64

log = logging.getLogger(__name__)
STAGES = ("features", "model", "reasons", "total")


class Batch(BaseModel):
    transactions: list[Transaction]


@dataclass(frozen=True)
class LoadedModel:
    resolved: ResolvedModel
    python_model: object  # the logged pyfunc's PythonModel: predict(context, frame) -> scores
    explainer: Explainer


def load_model(cfg: Config, alias: str) -> LoadedModel:
    import mlflow.pyfunc

    resolved = resolve(cfg, alias)
    python_model = mlflow.pyfunc.load_model(resolved.path).unwrap_python_model()
    return LoadedModel(resolved, python_model, Explainer(python_model, descriptions(cfg)))


def model_frame(rows: list[dict], numeric, categorical) -> pd.DataFrame:
    """Rows as registry.inputs.conform types them (float64 numbers with NaN, str categories with None),
    built column by column: conform's per-column coercion costs milliseconds for one row."""
    import numpy as np

    out = {c: np.array([np.nan if r[c] is None else float(r[c]) for r in rows], dtype="float64") for c in numeric}
    out.update({c: pd.Series([None if r[c] is None else str(r[c]) for r in rows], dtype=object) for c in categorical})
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Deployment:
    """What decides right now: the champion, and the live canary if there is one."""

    champion: LoadedModel
    canary: LoadedModel | None

    @property
    def versions(self) -> tuple[int, int | None]:
        return self.champion.resolved.version, self.canary.resolved.version if self.canary else None


def live_versions(cfg: Config) -> tuple[int | None, int | None]:
    return alias_version(cfg, contract.CHAMPION), alias_version(cfg, contract.CANARY)


def load_deployment(cfg: Config) -> Deployment:
    canary = alias_version(cfg, contract.CANARY)
    return Deployment(load_model(cfg, contract.CHAMPION), load_model(cfg, contract.CANARY) if canary else None)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("tidewater_api_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.rejected = Counter("tidewater_api_rejected", "Requests not scored, by reason", ["reason"],
                                registry=self.registry)
        self.decisions = Counter("tidewater_api_decisions", "Scored transactions by route and decision",
                                 ["route", "decision"], registry=self.registry)
        self.latency = Histogram("tidewater_api_latency_seconds", "Scoring time per request, by stage", ["stage"],
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2),
                                 registry=self.registry)
        self.model_version = Gauge("tidewater_api_model_version", "Model version serving each route (0: none)", ["route"],
                                   registry=self.registry)


class Scorer:
    """Online features + the deployed models -> one response per transaction."""

    def __init__(self, cfg: Config, metrics: Metrics, decisions: DecisionLog):
        self.cfg, self.metrics, self.decisions = cfg, metrics, decisions
        self.checks = request_checks(cfg)
        self.views = {name: (view.key, [f.name for f in view.features]) for name, view in cfg.features.views.items()}
        self.store = feature_store(cfg, apply=False)
        self.deployment: Deployment | None = None
        self.canary_buckets = int(round(cfg.deployment.canary_share * BUCKETS))
        self.reload_error: str | None = None

    def reload(self) -> bool:
        """Load a moved champion or canary alias and swap it in; True if the deployment changed."""
        wanted = live_versions(self.cfg)
        current = self.deployment.versions if self.deployment else None
        if wanted == current:
            return False
        if wanted[0] is None:
            raise ModelNotFound(f"no model {self.cfg.training.model_name}@{contract.CHAMPION} in the registry",
                                hint="run `tidewater run train` first (it registers a champion)")
        self.deployment = load_deployment(self.cfg)
        for route, version in zip((contract.CHAMPION, contract.CANARY), self.deployment.versions):
            self.metrics.model_version.labels(route).set(version or 0)
        routes = zip((contract.CHAMPION, contract.CANARY), self.deployment.versions)
        log.warning("scoring with %s", ", ".join(f"{r} v{v}" for r, v in routes if v))
        return True

    def _route(self, deployment: Deployment, txn: Transaction) -> LoadedModel:
        if deployment.canary is None:
            return deployment.champion
        key = str(getattr(txn, self.cfg.deployment.route_key))
        bucket = spark_xxhash64(SALT, key) % BUCKETS
        return deployment.canary if bucket < self.canary_buckets else deployment.champion

    def _lookup(self, txns: list[Transaction]) -> dict[str, list]:
        online: dict[str, list] = {}
        try:
            for key, names in self.views.values():
                online.update(online_features(self.cfg, key, [getattr(t, key) for t in txns], names,
                                              store=self.store, timestamps=True))
            return online
        except sqlite3.OperationalError as err:
            raise OnlineStoreUnavailable(f"the online store (SQLite under {self.cfg.root}) cannot be read: {err}",
                                         hint="run `tidewater run materialize_online`") from None

    def score(self, txns: list[Transaction]) -> list[dict]:
        deployment = self.deployment
        if deployment is None:
            raise ModelNotFound(self.reload_error or "no model loaded yet", hint="see GET /healthz")
        started = time.perf_counter()
        online = self._lookup(txns)
        looked_up = time.perf_counter()
        rows, as_of = [], []
        for i, txn in enumerate(txns):
            row = {f: online[f][i] for _, names in self.views.values() for f in names}
            row.update(request_inputs(self.cfg, txn, row.get("avg_amount_30d")))
            rows.append(row)
            as_of.append({view: _as_of(online, names[0], i, row[names[0]]) for view, (_, names) in self.views.items()})
        chosen = [self._route(deployment, t) for t in txns]
        scores, reasons = [0.0] * len(txns), [[] for _ in txns]
        model_s = reasons_s = 0.0
        for model in {id(m): m for m in chosen}.values():
            idx = [i for i, m in enumerate(chosen) if m is model]
            r = model.resolved
            part = model_frame([rows[i] for i in idx], r.numeric, r.categorical)
            t0 = time.perf_counter()
            values = pd.Series(model.python_model.predict(None, part)).to_numpy(dtype="float64")
            t1 = time.perf_counter()
            k = self.cfg.scoring.reasons
            explained = model.explainer.reasons(part, k) if k else [[] for _ in idx]
            reasons_s += time.perf_counter() - t1
            model_s += t1 - t0
            for j, i in enumerate(idx):
                scores[i], reasons[i] = float(values[j]), [x.as_dict() for x in explained[j]]
        total = time.perf_counter() - started
        features_s = looked_up - started
        timing = {"features": features_s, "model": model_s, "reasons": reasons_s, "total": total}
        for stage, seconds in timing.items():
            self.metrics.latency.labels(stage).observe(seconds)
        out, logged = [], []
        scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat()
        for i, txn in enumerate(txns):
            r = chosen[i].resolved
            route = contract.CANARY if chosen[i] is deployment.canary else contract.CHAMPION
            decision = scores[i] >= r.threshold
            self.metrics.decisions.labels(route, str(int(decision))).inc()
            decision_id = uuid.uuid4().hex
            out.append({"decision_id": decision_id, "txn_id": txn.txn_id, "score": scores[i], "decision": decision,
                        "threshold": r.threshold, "model": {"name": r.name, "version": r.version, "alias": r.alias}, "route": route,
                        "reasons": reasons[i], "features_as_of": as_of[i], "features": rows[i],
                        "latency_ms": {k: round(v * 1000, 3) for k, v in timing.items()}})
            logged.append(_log_line(decision_id, txn, r, route, scores[i], decision, scored_at, as_of[i], rows[i],
                                    reasons[i], total))
        self.decisions.write(logged)  # before the answer: an answered decision is never only in memory
        return out


def _log_line(decision_id: str, txn: Transaction, r: ResolvedModel, route: str, score: float, decision: bool, scored_at: str,
              as_of: dict, inputs: dict, reasons: list[dict], seconds: float) -> dict:
    """A gold.decisions_online row (scoring.online_decisions.OnlineDecision) as JSON."""
    return {"decision_id": decision_id, "txn_id": txn.txn_id, "customer_id": txn.customer_id,
            "merchant_id": txn.merchant_id, "event_time": txn.utc_time().isoformat(), "score": score,
            "decision": int(decision), "threshold": r.threshold, "model_name": r.name, "model_version": r.version,
            "model_alias": r.alias, "mlflow_run_id": r.mlflow_run_id, "route": route, "scored_at": scored_at,
            "features_as_of": as_of,
            "inputs_numeric": {c: None if inputs[c] is None else float(inputs[c]) for c in r.numeric},
            "inputs_categorical": {c: inputs[c] for c in r.categorical}, "reasons": reasons,
            "latency_ms": round(seconds * 1000, 3)}


def _as_of(online: dict, feature: str, i: int, value) -> str | None:
    """When the entity's feature row was computed (None: the store has no row for it)."""
    seconds = online.get(feature + TIMESTAMP_SUFFIX, [None] * (i + 1))[i]
    if value is None or not seconds:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None).isoformat()


class Guard:
    """ASGI middleware: bounded request bodies (413) and every response counted by path and status."""

    def __init__(self, app, limit: int, metrics: Metrics):
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, status, received = scope["path"], [500], [0]
        declared = dict(scope["headers"]).get(b"content-length")

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        async def bounded_receive():
            message = await receive()
            received[0] += len(message.get("body", b""))
            if received[0] > self.limit:
                raise _TooLarge()
            return message

        try:
            if declared and declared.isdigit() and int(declared) > self.limit:
                raise _TooLarge()
            await self.app(scope, bounded_receive, counted_send)
        except _TooLarge:
            self.metrics.rejected.labels("too_large").inc()
            response = JSONResponse({"detail": f"request body over {self.limit} bytes",
                                     "hint": "split it (services.api.max_body_bytes)"}, status_code=413)
            await response(scope, receive, counted_send)
        finally:
            known = path if path in KNOWN_PATHS else "other"
            self.metrics.requests.labels(known, str(status[0])).inc()


class _TooLarge(Exception):
    pass


KNOWN_PATHS = {"/v1/score", "/v1/score/batch", "/healthz", "/metrics", "/openapi.json", "/docs"}


def create_app(cfg: Config, reload: bool = True) -> FastAPI:
    """The API for one config; with `reload`, a thread follows the registry's aliases."""
    import torch

    torch.set_num_threads(1)  # one small MLP per request: threads only add contention on few cores
    metrics = Metrics()
    decisions = DecisionLog(cfg)
    scorer = Scorer(cfg, metrics, decisions)
    callers = Callers(cfg)
    api = cfg.services.api
    stop = threading.Event()

    def flush_audit():
        while not stop.wait(1.0):
            callers.flush()

    def try_reload():
        try:
            scorer.reload()
            scorer.reload_error = None
        except Exception as err:  # keep serving what is loaded; /healthz says why nothing is
            scorer.reload_error = f"{err}" + (f" (hint: {err.hint})" if getattr(err, "hint", None) else "")
            log.warning("could not load the deployment: %s", scorer.reload_error)

    def follow_aliases():
        while not stop.wait(api.reload_seconds):
            try_reload()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if reload:
            try_reload()  # before the port opens: a started API has its champion, if there is one
            threading.Thread(target=follow_aliases, name="follow-aliases", daemon=True).start()
        threading.Thread(target=flush_audit, name="audit", daemon=True).start()
        yield
        stop.set()
        decisions.close()
        callers.flush()

    app = FastAPI(title="Tidewater scoring API", version="1", lifespan=lifespan,
                  description="Card-fraud decisions for one transaction or a batch, with reason codes.")
    app.state.scorer = scorer

    def rejected(status: int, reason: str, detail, hint: str | None = None) -> JSONResponse:
        metrics.rejected.labels(reason).inc()
        return JSONResponse({"detail": detail, **({"hint": hint} if hint else {})}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in err.errors()]
        return rejected(422, "invalid_request", jsonable_encoder(errors))

    @app.exception_handler(OnlineStoreUnavailable)
    async def _store_down(request: Request, err: OnlineStoreUnavailable):
        return rejected(503, "online_store_unavailable", str(err), err.hint)

    @app.exception_handler(TidewaterError)
    async def _not_ready(request: Request, err: TidewaterError):
        return rejected(503, "not_ready", str(err), err.hint)

    def checked(txns: list[Transaction], loc) -> list[dict]:
        return [e for i, t in enumerate(txns) for e in violations(scorer.checks, t, loc(i))]

    def unauthorized(route: str) -> JSONResponse:
        callers.called(None, route, "denied", detail="no valid bearer token")
        return rejected(401, "unauthorized", "a valid bearer token is required to score",
                        hint=f"send Authorization: Bearer <token>; tokens: ${cfg.access.tokens_env} of the "
                             f"API's environment, else the token file {cfg.root}/services/tokens")

    def answered(who, route: str, results: list[dict]) -> None:
        models = sorted({f"{r['model']['name']} v{r['model']['version']}" for r in results})
        callers.called(who, route, "ok", models=models, detail=f"{len(results)} transaction(s)")  # no ids: erasable data stays out

    @app.post("/v1/score", summary="Score one transaction (Authorization: Bearer <token>)")
    async def score_one(txn: Transaction, authorization: str | None = Header(default=None)):
        who = callers.caller(authorization)
        if who is None:
            return unauthorized("POST /v1/score")
        errors = checked([txn], lambda i: ("body",))
        if errors:
            callers.called(who, "POST /v1/score", "failed", detail="failed checks")
            return rejected(422, "failed_check", errors)
        result = scorer.score([txn])[0]
        answered(who, "POST /v1/score", [result])
        return result

    @app.post("/v1/score/batch", summary="Score up to services.api.max_batch transactions (Authorization: Bearer <token>)")
    async def score_batch(batch: Batch, authorization: str | None = Header(default=None)):
        who = callers.caller(authorization)
        if who is None:
            return unauthorized("POST /v1/score/batch")
        if not 1 <= len(batch.transactions) <= api.max_batch:
            return rejected(422, "invalid_request", [{"loc": ["body", "transactions"], "type": "too_long",
                                                      "msg": f"1 to {api.max_batch} transactions per request"}])
        errors = checked(batch.transactions, lambda i: ("body", "transactions", i))
        if errors:
            callers.called(who, "POST /v1/score/batch", "failed", detail="failed checks")
            return rejected(422, "failed_check", errors)
        results = scorer.score(batch.transactions)
        answered(who, "POST /v1/score/batch", results)
        return {"results": results}

    @app.get("/healthz", summary="Ready when a champion is loaded")
    async def healthz():
        d = scorer.deployment
        if d is None:
            return JSONResponse({"status": "no model", "detail": scorer.reload_error}, status_code=503)
        return {"status": "ok", "champion": d.champion.resolved.version,
                "canary": d.canary.resolved.version if d.canary else None,
                "online_store": cfg.features.online_store, "reload_error": scorer.reload_error}

    @app.get("/metrics", summary="Prometheus text format")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Guard, limit=api.max_body_bytes, metrics=metrics)
    return app
