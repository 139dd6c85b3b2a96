"""Training: distributed runs that learn, agree across ranks and reruns, and register honestly.

The first run is the demo's own (conftest's demo_lake); the others go through the same path: from
this (platform) environment the train job hands over to the training environment with spark-submit.
"""

from __future__ import annotations

import argparse

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from conftest import DEMO_ENV, conf_env
from lakehouse.config import load_config
from lakehouse.lineage import producer_of
from lakehouse.tables import current_version, read_table
from training.job import train as train_job
from lakehouse.model_store import tracking_uri
from registry.inputs import signature_input

SAME_RUN_TOLERANCE = 1e-6  # same version, seed and engine: per-epoch metrics agree to float rounding


def train(spark, lake, env=None, **options):
    """`tidewater run train` from this environment: it hands over to the training environment."""
    env = env or lake.env
    args = argparse.Namespace(env=env, root=str(lake.root), conf_dir=str(lake.conf_dir), engine=None, num_proc=None,
                              max_epochs=None, training_set_version=None, result_file=None, force=True)
    for key, value in options.items():
        setattr(args, key, value)
    return train_job(spark, load_config(env, root=lake.root, conf_dir=lake.conf_dir), args).summary


@pytest.fixture(scope="module")
def horovod_run(demo_lake):
    """The demo's own training run (engine horovod, 2 processes), as the train job reported it."""
    mlflow.set_tracking_uri(tracking_uri(demo_lake.cfg))
    client = MlflowClient()
    exp = client.get_experiment_by_name(demo_lake.cfg.project)
    run = client.search_runs([exp.experiment_id], "tags.`tidewater.engine` = 'horovod'", order_by=["start_time ASC"])[0]
    version = client.search_model_versions(f"run_id = '{run.info.run_id}'")[0]
    return {"mlflow_run_id": run.info.run_id, "lineage_run_id": run.data.tags["tidewater.lineage_run_id"],
            "model_version": int(version.version), "holdout": {"auc_pr": run.data.metrics["holdout_auc_pr"]}}


def epochs(run_id: str, metric: str) -> list[float]:
    return [m.value for m in sorted(MlflowClient().get_metric_history(run_id, metric), key=lambda m: m.step)]


def assert_distributed_run(spark, cfg, summary: dict, engine: str) -> None:
    run = MlflowClient().get_run(summary["mlflow_run_id"])
    tags, params = run.data.tags, run.data.params
    losses = epochs(run.info.run_id, "train_loss")
    assert len(losses) >= 3 and losses[-1] < losses[0], losses  # it learns
    digests = tags["tidewater.rank_digests"].split(",")
    assert tags["tidewater.world_size"] == "2" and len(digests) == 2 and digests[0] == digests[1]
    assert params["engine"] == engine and params["num_proc"] == "2"
    version = int(tags["tidewater.training_set_version"])  # the exact version it read
    assert tags["tidewater.training_set"] == "features.training_set"
    assert version <= current_version(spark, cfg.table("features.training_set"))
    built_by = producer_of(spark, cfg, "features.training_set", version)
    for inp in built_by["inputs"]:  # feature and label versions behind the training set
        assert tags[f"tidewater.input.{inp['table']}"] == str(inp["version"])
    assert "tidewater.input.features.customer_features" in tags and "tidewater.input.silver.labels" in tags
    assert tags["tidewater.code_version"] and tags["tidewater.lineage_run_id"] == summary["lineage_run_id"]
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "environment")}
    assert artifacts == {"environment/requirements.txt", "environment/versions.json"}
    lineage = read_table(spark, cfg.table("meta.lineage")).where(f"run_id = '{summary['lineage_run_id']}'").first()
    assert lineage["job"] == "train" and lineage["status"] == "succeeded"
    inputs = {i["table"]: i["version"] for i in lineage["inputs"]}
    assert inputs.pop("features.training_set") == version
    assert list(inputs) == ["silver.customers"]  # the fairness gate's customer segments, as of each transaction


def test_two_horovod_processes_learn_the_same_parameters_and_register_a_champion(spark, demo_lake, horovod_run):
    cfg = demo_lake.cfg
    assert_distributed_run(spark, cfg, horovod_run, "horovod")
    client = MlflowClient()
    name = cfg.training.model_name
    tags = client.get_model_version(name, str(horovod_run["model_version"])).tags
    assert tags["tidewater.decision"] == "promoted" and tags["tidewater.compared_with"] == "none"
    decision = (read_table(spark, cfg.table("meta.model_decisions"))
                .where(F.col("challenger_version") == horovod_run["model_version"]).first())
    assert decision["promoted"] and decision["champion_version"] is None
    assert decision["mlflow_run_id"] == horovod_run["mlflow_run_id"] and decision["holdout_positives"] > 0
    # the aliases follow the decisions: champion is the latest promoted version, challenger the latest trained
    decisions = read_table(spark, cfg.table("meta.model_decisions")).orderBy("decided_at").collect()
    promoted = [d["challenger_version"] for d in decisions if d["promoted"]]
    assert int(client.get_model_version_by_alias(name, "champion").version) == promoted[-1]
    assert int(client.get_model_version_by_alias(name, "challenger").version) == decisions[-1]["challenger_version"]


def test_torch_distributor_runs_the_same_training_function(spark, demo_lake, horovod_run):
    cfg = demo_lake.cfg
    summary = train(spark, demo_lake, engine="torch_distributor")
    assert_distributed_run(spark, cfg, summary, "torch_distributor")


def test_same_version_and_seed_give_the_same_metrics(spark, demo_lake, horovod_run):
    version = int(MlflowClient().get_run(horovod_run["mlflow_run_id"]).data.tags["tidewater.training_set_version"])
    again = train(spark, demo_lake, engine="horovod", training_set_version=version)
    for metric in ("train_loss", "val_auc_pr"):
        first, second = epochs(horovod_run["mlflow_run_id"], metric), epochs(again["mlflow_run_id"], metric)
        assert len(first) == len(second)
        np.testing.assert_allclose(second, first, rtol=0, atol=SAME_RUN_TOLERANCE)
    assert again["holdout"]["auc_pr"] == pytest.approx(horovod_run["holdout"]["auc_pr"], abs=SAME_RUN_TOLERANCE)


def test_logged_pyfunc_scores_a_spark_dataframe_like_the_model_in_process(spark, demo_lake, horovod_run):
    cfg = demo_lake.cfg
    uri = f"models:/{cfg.training.model_name}/{horovod_run['model_version']}"
    model = mlflow.pyfunc.load_model(uri)
    rows = read_table(spark, cfg.table("features.training_set")).orderBy("txn_id").limit(300)
    pdf = rows.toPandas()
    expected = np.asarray(model.predict(signature_input(model, pdf)))
    columns = [*cfg.training.numeric_features, *cfg.training.categorical_features]
    udf = mlflow.pyfunc.spark_udf(spark, uri, env_manager="local", result_type="double")
    typed = rows.select("txn_id", *[F.col(c).cast("double") for c in cfg.training.numeric_features],
                        *cfg.training.categorical_features)
    scored = typed.withColumn("score", udf(*[F.col(c) for c in columns])).orderBy("txn_id").toPandas()
    assert len(scored) == 300 and (scored["txn_id"].to_numpy() == pdf["txn_id"].to_numpy()).all()
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=0, atol=1e-6)
    assert ((expected > 0) & (expected < 1)).all()


def test_a_worse_challenger_does_not_take_the_champion_alias(spark, demo_lake, horovod_run):
    cfg = demo_lake.cfg
    # Given a model that sees only the hour of the day (a far weaker signal than the champion's)
    conf_env(demo_lake.root, "weak", {**DEMO_ENV, "training": {**DEMO_ENV["training"], "num_proc": 1,
                                      "numeric_features": ["hour_of_day"], "categorical_features": []}})
    client = MlflowClient()
    champion_before = int(client.get_model_version_by_alias(cfg.training.model_name, "champion").version)
    weak = train(spark, demo_lake, env="weak")
    assert not weak["promoted"]
    assert int(client.get_model_version_by_alias(cfg.training.model_name, "champion").version) == champion_before
    assert int(client.get_model_version_by_alias(cfg.training.model_name, "challenger").version) == weak["model_version"]
    tags = client.get_model_version(cfg.training.model_name, str(weak["model_version"])).tags
    assert tags["tidewater.decision"] == "rejected" and tags["tidewater.compared_with"] == str(champion_before)
    row = (read_table(spark, cfg.table("meta.model_decisions"))
           .where(F.col("challenger_version") == weak["model_version"]).first())
    assert not row["promoted"] and row["challenger_value"] < row["champion_value"]
    assert row["champion_version"] == champion_before


@pytest.mark.slow
def test_training_notebook_loads_the_run_its_data_versions_and_the_model(demo_lake, horovod_run, monkeypatch):
    from test_notebooks import execute

    text = execute("03_training.ipynb", demo_lake.root, monkeypatch)
    assert "is champion; trained by run" in text and "features.training_set@v" in text
    assert "features.customer_features" in text  # the data versions behind the training set
    assert "champion on its held-out slice" in text
