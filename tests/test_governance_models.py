"""Model governance: a fairness gate at validation, and a model card and CycloneDX 1.6 ML-BOM for every version.

The gate is specified on literal rows; then on the demo: its first champion passed the gate inside
the training environment and carries a card and a valid ML-BOM, and a deliberately biased copy of
that champion (it ranks one country's transactions above all others) goes through the real validate_model
job on a registry of its own and is blocked, while an unbiased copy passes.
"""

from __future__ import annotations

import dataclasses
import json

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F
from pyspark.sql import types as T

from conftest import tidewater_in_process
from lakehouse.config import FairnessConf, load_config
from lakehouse.model_store import tracking_uri
from lakehouse.schemas import spark_schema
from lakehouse.tables import append_rows, read_table
from registry import contract
from registry.client import connect
from registry.deployments import DECISIONS_TABLE, DEPLOYMENTS_TABLE
from training.fairness import fairness_report
from training.validation import Decision, record, validate_model

GATE = FairnessConf(slices=["country"], max_gap={"selection_rate": 0.1, "false_positive_rate": 0.05}, min_group_rows=100)


def scored_rows(flag_share: dict[str, float], rows: dict[str, int], fraud_share: float = 0.1) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows per country with the same fraud share; every fraud caught, `flag_share` of the legitimate rows flagged."""
    frames, scores = [], []
    for country, n in rows.items():
        fraud = np.arange(n) < round(n * fraud_share)
        legit_flagged = np.arange(n) - fraud.sum() < round((n - fraud.sum()) * flag_share[country])
        frames.append(pd.DataFrame({"country": country, "is_fraud": fraud.astype(int)}))
        scores.append(np.where(fraud | legit_flagged, 0.9, 0.1))
    return pd.concat(frames, ignore_index=True), np.concatenate(scores)


def test_a_scorer_that_flags_one_country_far_more_at_equal_fraud_fails_the_gate():
    # Given FR and DE with the same fraud share, FR's legitimate rows flagged at 30%, DE's at 2%,
    # and a country too small to gate whose rows are all flagged
    rows, scores = scored_rows({"FR": 0.3, "DE": 0.02, "LU": 1.0}, {"FR": 400, "DE": 400, "LU": 20})
    # When the gate judges them at the threshold
    report = fairness_report(rows, "is_fraud", scores, 0.5, GATE)
    # Then it fails on both bounded gaps, naming the groups, and reports LU without gating it
    assert not report["passed"]
    assert [v.split(" (")[0] for v in report["violations"]] == ["country: selection_rate gap 0.253 > 0.1",
                                                                 "country: false_positive_rate gap 0.281 > 0.05"]
    assert "FR 0.300 vs DE 0.019" in report["violations"][1]
    groups = {g["group"]: g for g in report["slices"]["country"]["groups"]}
    assert groups["FR"]["false_positive_rate"] == pytest.approx(0.3, abs=0.003) and groups["FR"]["true_positive_rate"] == 1
    assert not groups["LU"]["gated"] and groups["LU"]["selection_rate"] == 1 and groups["FR"]["gated"]
    assert report["slices"]["country"]["gaps"]["selection_rate"]["highest"] == "FR"


def test_equal_alert_rates_pass_and_an_undefined_rate_is_not_a_zero():
    # Given two countries flagged alike, and one with no fraud at all
    alike, alike_scores = scored_rows({"FR": 0.02, "DE": 0.02}, {"FR": 300, "DE": 300})
    no_fraud, no_fraud_scores = scored_rows({"ES": 0.02}, {"ES": 200}, fraud_share=0.0)
    rows, scores = pd.concat([alike, no_fraud], ignore_index=True), np.concatenate([alike_scores, no_fraud_scores])
    report = fairness_report(rows, "is_fraud", scores, 0.5, GATE)
    assert report["passed"] and report["violations"] == []
    groups = {g["group"]: g for g in report["slices"]["country"]["groups"]}
    assert groups["ES"]["true_positive_rate"] is None  # no fraud: undefined, left out of the gap
    assert report["slices"]["country"]["gaps"]["true_positive_rate"]["gap"] == 0


def test_an_older_decisions_table_gains_the_fairness_columns(spark, tmp_path):
    # Given meta.model_decisions as written before the gate existed (no fairness columns)
    cfg = load_config("local", root=tmp_path)
    old = dataclasses.make_dataclass("OldDecision", [(f.name, f.type, dataclasses.field(default=f.default))
                                                     for f in dataclasses.fields(Decision)
                                                     if not f.name.startswith("fairness")])
    old_schema = T.StructType([f for f in spark_schema(Decision).fields if not f.name.startswith("fairness")])
    values = dict(decided_at=pd.Timestamp("2026-03-01", tz="UTC").to_pydatetime(), model_name="fraud_detector",
                  challenger_version=1, champion_version=None, metric="auc_pr", challenger_value=0.5,
                  champion_value=None, bounds="{}", promoted=True, reason="first model", holdout_rows=10,
                  holdout_positives=2, threshold=0.5, threshold_rule="r")
    append_rows(spark, cfg.table(DECISIONS_TABLE), [old(**values)], old_schema)
    # When a decision with a fairness verdict is recorded
    report = {"passed": False, "violations": ["country: selection_rate gap 0.3 > 0.1"]}
    record(spark, cfg, Decision(**{**values, "challenger_version": 2, "promoted": False},
                                fairness_passed=False, fairness=json.dumps(report)))
    # Then the table has both rows: the old one without a verdict, the new one with it
    rows = {r["challenger_version"]: r for r in read_table(spark, cfg.table(DECISIONS_TABLE)).collect()}
    assert rows[1]["fairness_passed"] is None and rows[1]["fairness"] is None
    assert rows[2]["fairness_passed"] is False and json.loads(rows[2]["fairness"]) == report


def bom_validates(bom: dict) -> None:
    """The CycloneDX 1.6 JSON schema bundled with cyclonedx-python-lib (strict), no network."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    assert error is None, error.data.message
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"


def artifact_text(client, run_id: str, path: str, tmp_path) -> str:
    return open(client.download_artifacts(run_id, path, str(tmp_path))).read()


@pytest.mark.slow
def test_the_demo_champion_passed_the_gate_in_the_training_environment_with_a_card_and_a_valid_ml_bom(
        spark, demo_lake, tmp_path):
    cfg = demo_lake.cfg
    # Given the demo's first promoted version (trained and validated by `train`, in .venv-train)
    first = (read_table(spark, cfg.table(DECISIONS_TABLE)).where(F.col("promoted"))
             .orderBy("decided_at").first())
    version, run_id = first["challenger_version"], first["mlflow_run_id"]
    # Then its decision carries a passed fairness verdict over both slices
    assert first["fairness_passed"] is True
    report = json.loads(first["fairness"])
    assert set(report["slices"]) == {"segment", "country"} and report["passed"] and not report["violations"]
    segments = {g["group"] for g in report["slices"]["segment"]["groups"]}
    assert segments <= {"mass", "affluent", "student", "business", "unknown"} and len(segments) >= 3
    client = MlflowClient(tracking_uri(cfg), tracking_uri(cfg))
    assert client.get_model_version(cfg.training.model_name, str(version)).tags[contract.FAIRNESS] == "passed"
    # and its run holds a model card and an ML-BOM that validates against CycloneDX 1.6
    logged = {a.path for a in client.list_artifacts(run_id, "governance")}
    assert logged == {contract.MODEL_CARD_JSON, contract.MODEL_CARD_HTML, contract.ML_BOM, contract.FAIRNESS_REPORT}
    bom = json.loads(artifact_text(client, run_id, contract.ML_BOM, tmp_path))
    bom_validates(bom)
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and model["version"] == str(version)
    assessed = {a["groupAtRisk"] for a in model["modelCard"]["considerations"]["fairnessAssessments"]}
    assert assessed == {f"{name}={g['group']}" for name, r in report["slices"].items() for g in r["groups"]}
    data = {c["name"]: c for c in bom["components"] if c["type"] == "data"}
    assert data["features.training_set"]["version"] == f"v{first['training_set_version']}"
    assert {"name": "delta.version", "value": str(first["training_set_version"])} in \
        data["features.training_set"]["data"][0]["contents"]["properties"]
    assert "silver.customers" in data and "features.customer_features" in data
    libraries = {c["name"].lower(): c["version"] for c in bom["components"] if c["type"] == "library"}
    assert libraries["torch"].startswith("2.13") and "horovod" in libraries and libraries["numpy"].startswith("1.")
    environment = next(c for c in bom["components"] if c["type"] == "platform")
    assert {p["name"] for p in environment["properties"]} >= {"tidewater:python", "tidewater:torch", "tidewater:platform"}
    # When `tidewater models card VERSION` runs, then it prints that card
    env = {"TIDEWATER_CONF_DIR": str(demo_lake.conf_dir)}
    shown = tidewater_in_process(["models", "card", str(version), "--root", str(demo_lake.root), "--env", demo_lake.env],
                                 env=env)
    assert shown.returncode == 0, shown.stderr
    card = json.loads(shown.stdout)
    assert card["model"]["version"] == version and card["decision"]["verdict"] == "promoted"
    assert {"table": "features.training_set", "version": first["training_set_version"]}.items() <= \
        card["training_data"]["datasets"][0].items()
    assert card["threshold"]["value"] == first["threshold"] and card["intended_use"]["users"]
    assert card["metrics"]["holdout"]["auc_pr"] == pytest.approx(first["challenger_value"])
    page = tmp_path / "card.html"
    shown = tidewater_in_process(["models", "card", str(version), "--format", "html", "--out", str(page),
                                  "--root", str(demo_lake.root), "--env", demo_lake.env], env=env)
    assert shown.returncode == 0 and f"fraud_detector v{version}" in page.read_text()
    missing = tidewater_in_process(["models", "card", "999", "--root", str(demo_lake.root), "--env", demo_lake.env],
                                   env=env)
    assert missing.returncode != 0 and "no version 999" in missing.stderr and "Traceback" not in missing.stderr


class CountryBoost(mlflow.pyfunc.PythonModel):
    """The demo champion's scores, with every transaction from `country` ranked above every other (or left alone).

    Under an alert budget on legitimate rows no threshold flags a whole country, so the bias is in the
    ranking: the champion's order is kept within each side, `country` in [0.5, 1), the rest in [0, 0.5),
    so every alert the budget allows falls on that country.
    """

    def __init__(self, country: str | None):
        self.country = country

    def load_context(self, context):
        self.base = mlflow.pyfunc.load_model(context.artifacts["base"])

    def predict(self, context, model_input, params=None):
        scores = np.asarray(self.base.predict(model_input), dtype="float64")
        if self.country is None:
            return scores
        return np.where(model_input["country"].to_numpy() == self.country, 0.5 + scores / 2, scores / 2)


@pytest.fixture(scope="module")
def copies_of_the_champion(spark, demo_lake, tmp_path_factory):
    """A registry of its own (root elsewhere, the demo's training set and customers read in place), where
    the demo champion is registered twice by a run with its own data tags: biased against the held-out
    slice's most frequent country (v1), then unchanged (v2). Returns (cfg, client, that country)."""
    from registry.contract import resolve

    demo = demo_lake.cfg
    champion = resolve(demo, contract.CHAMPION)
    demo_client = MlflowClient(tracking_uri(demo), tracking_uri(demo))
    source = demo_client.get_run(champion.mlflow_run_id)
    env_dir = tmp_path_factory.mktemp("champion-env")
    environment = {p: artifact_text(demo_client, source.info.run_id, p, env_dir)
                   for p in (contract.ENVIRONMENT_REQUIREMENTS, contract.ENVIRONMENT_VERSIONS)}
    holdout = (read_table(spark, demo.table("features.training_set"), champion.training_set_version)
               .where(F.col("event_time") >= F.lit(source.data.params[contract.HOLDOUT_FROM]).cast("timestamp")))
    counts = holdout.groupBy("country").count().orderBy(F.desc("count"), "country").collect()
    country = counts[0]["country"]

    root = tmp_path_factory.mktemp("governance")
    base = load_config(demo_lake.env, root=root, conf_dir=demo_lake.conf_dir)
    # The demo's held-out slice is small (a few hundred rows): gate groups as large as its second most
    # frequent country, so the biased country is gated with at least one other to compare it with, and
    # bound the gaps at 0.3: small groups' honest gaps reach 0.13, the biased copy's 0.475.
    fairness = base.training.fairness.model_copy(update={
        "min_group_rows": counts[1]["count"], "max_gap": {"selection_rate": 0.3, "false_positive_rate": 0.3}})
    cfg = base.model_copy(update={
        "table_paths": {t: demo.table(t).path for t in ("features.training_set", "silver.customers")},
        "training": base.training.model_copy(update={"fairness": fairness})})
    client, experiment_id = connect(cfg)
    assert client.tracking_uri == f"sqlite:///{root / 'mlflow' / 'mlflow.db'}" != tracking_uri(demo)  # its own store
    signature = mlflow.models.Model.load(champion.path).signature
    for boosted in (country, None):
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_params(source.data.params)
            mlflow.set_tags({k: v for k, v in source.data.tags.items() if k.startswith("tidewater.")})
            for path, text in environment.items():
                mlflow.log_text(text, path)
            mlflow.pyfunc.log_model(name="model", python_model=CountryBoost(boosted),
                                    artifacts={"base": champion.path}, signature=signature,
                                    pip_requirements=["mlflow"], registered_model_name=cfg.training.model_name)
    return cfg, client, country


@pytest.mark.slow
def test_a_biased_copy_of_the_champion_is_blocked_by_the_gate_and_an_unbiased_one_passes(
        spark, copies_of_the_champion, tmp_path):
    cfg, client, country = copies_of_the_champion
    name = cfg.training.model_name
    # When validate_model judges the biased version (no champion yet: only the absolute bars and the gate)
    validate_model(spark, cfg, model_version=1)
    decision = read_table(spark, cfg.table(DECISIONS_TABLE)).where("challenger_version = 1").first()
    # Then it is rejected for fairness alone, with the reason in the decision row, and no serving alias moved
    assert not decision["promoted"] and decision["deployed_as"] is None and decision["fairness_passed"] is False
    assert decision["reason"].startswith("fairness gate failed: ") and "country: selection_rate gap" in decision["reason"]
    assert f"({country} " in decision["reason"]
    countries = json.loads(decision["fairness"])["slices"]["country"]
    assert countries["gaps"]["selection_rate"]["highest"] == country  # every alert on it, none on the others
    assert all(g["selection_rate"] == 0 for g in countries["groups"] if g["gated"] and g["group"] != country)
    assert decision["challenger_value"] >= cfg.training.promotion.bounds["auc_pr"].threshold  # it ranks well enough
    assert set(client.get_registered_model(name).aliases) == {contract.CHALLENGER}
    moves = read_table(spark, cfg.table(DEPLOYMENTS_TABLE)).collect()
    assert [(m["alias"], m["action"], m["to_version"]) for m in moves] == [(contract.CHALLENGER, "challenge", 1)]
    tags = client.get_model_version(name, "1").tags
    assert tags[contract.DECISION] == "rejected" and tags[contract.FAIRNESS] == "failed"
    # and the verdict is logged to the version's MLflow run: the report, the gaps, and a card that says so
    run_id = client.get_model_version(name, "1").run_id
    gaps = client.get_run(run_id).data.metrics
    assert gaps["fairness_gap_country_selection_rate"] > cfg.training.fairness.max_gap["selection_rate"]
    assert json.loads(artifact_text(client, run_id, contract.FAIRNESS_REPORT, tmp_path))["violations"]
    card = json.loads(artifact_text(client, run_id, contract.MODEL_CARD_JSON, tmp_path))
    assert card["decision"]["verdict"] == "rejected" and not card["fairness"]["passed"]
    bom_validates(json.loads(artifact_text(client, run_id, contract.ML_BOM, tmp_path)))

    # When the unbiased copy is judged, then it passes the gate and becomes champion
    validate_model(spark, cfg, model_version=2)
    decision = read_table(spark, cfg.table(DECISIONS_TABLE)).where("challenger_version = 2").first()
    assert decision["promoted"] and decision["fairness_passed"] is True, decision["reason"]
    assert int(client.get_model_version_by_alias(name, contract.CHAMPION).version) == 2
    lineage = read_table(spark, cfg.table("meta.lineage")).where("job = 'validate_model'").collect()
    assert all({i["table"] for i in r["inputs"]} >= {"features.training_set", "silver.customers"} for r in lineage)
