"""The pieces training relies on, checked against references: metrics, preprocessing, decisions."""

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve

from lakehouse.config import MetricBound, PromotionConf, load_config
from lakehouse.model_store import ENV_URI, tracking_uri
from registry.client import registry_client
from registry.metrics import average_precision, choose_threshold, recall_at_precision, threshold_metrics
from training.preprocessing import fit_preprocessor
from training.validation import judge


def test_average_precision_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random(2000) < 0.05
    scores = np.round(rng.random(2000) + y * 0.3, 2)  # rounding makes ties
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)


def test_recall_at_precision_matches_the_precision_recall_curve():
    rng = np.random.default_rng(5)
    y = rng.random(3000) < 0.1
    scores = rng.random(3000) + y * 0.5
    precision, recall, _ = precision_recall_curve(y, scores)
    assert recall_at_precision(y, scores, 0.8) == pytest.approx(recall[precision >= 0.8].max())


def test_threshold_metrics_count_what_they_should():
    m = threshold_metrics([1, 1, 0, 0], [0.9, 0.2, 0.8, 0.1], 0.5)
    assert m == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_spark_and_pandas_renderings_of_the_preprocessor_agree(spark):
    # Given rows with nulls, an unseen category and a heavy tail
    rows = [(10.0, 1, "pos", "FR"), (250.0, None, "ecom", "DE"), (None, 3, None, "FR"),
            (90000.0, 7, "atm", "XX"), (0.0, 0, "pos", None)]
    df = spark.createDataFrame(rows, "amount double, count long, channel string, country string")
    pre = fit_preprocessor(df.limit(3), ["amount", "count"], ["channel", "country"], max_categories=10)
    assert pre.log == {"amount": True, "count": True}
    # When both renderings encode the same rows
    spark_rows = df.select(*pre.spark_columns()).collect()
    pdf = pd.DataFrame(rows, columns=["amount", "count", "channel", "country"])
    num, cat = pre.numeric_matrix(pdf), pre.category_matrix(pdf)
    # Then they give the same numbers
    np.testing.assert_allclose(np.array([[r["n0"], r["n1"]] for r in spark_rows], dtype=np.float32), num, atol=1e-6)
    assert [[r["c0"], r["c1"]] for r in spark_rows] == cat.tolist()
    assert cat[3].tolist() == [0, 0] and cat[2][0] == 0  # unseen and missing categories share index 0
    assert abs(num).max() <= 10.0


def test_the_champion_moves_only_when_every_bound_holds():
    promo = PromotionConf(metric="auc_pr", bounds={"auc_pr": MetricBound(threshold=0.3, min_absolute_change=0.01),
                                                   "recall": MetricBound(min_relative_change=0.1)})
    # Given no champion, only the absolute bars apply
    assert judge({"auc_pr": 0.5, "recall": 0.1}, None, promo)[0]
    promoted, reason = judge({"auc_pr": 0.2, "recall": 0.9}, None, promo)
    assert not promoted and "auc_pr" in reason and "threshold" in reason
    # Given a champion, the change bars apply too: +0.02 AUC-PR and +20% recall pass; +0.005 does not
    champion = {"auc_pr": 0.60, "recall": 0.50}
    assert judge({"auc_pr": 0.62, "recall": 0.60}, champion, promo)[0]
    assert not judge({"auc_pr": 0.605, "recall": 0.60}, champion, promo)[0]
    assert not judge({"auc_pr": 0.62, "recall": 0.52}, champion, promo)[0]
    # An undefined metric (no fraud in the slice) never promotes
    assert not judge({"auc_pr": float("nan"), "recall": 0.6}, champion, promo)[0]


def test_a_bound_needs_a_bar_and_the_headline_metric_needs_a_bound():
    with pytest.raises(ValueError):
        MetricBound()
    with pytest.raises(ValueError):
        PromotionConf(metric="f1", bounds={"auc_pr": MetricBound(threshold=0.1)})


def test_the_precision_rule_picks_the_lowest_threshold_at_the_target():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 0, 0])
    s = np.array([.95, .9, .85, .8, .7, .6, .5, .4, .3, .2])
    threshold, why = choose_threshold(y, s, "precision", 0.75, 0.1)
    # At 0.8 three of four flagged are fraud (0.75); any lower threshold falls below the target
    assert threshold == 0.8 and threshold_metrics(y, s, threshold)["precision"] == 0.75
    assert "recall 0.750" in why
    # Where no threshold reaches the target, the best F1 (at 0.8: precision and recall 0.5, F1 0.5)
    threshold, why = choose_threshold(y[2:], s[2:], "precision", 1.0, 0.1)
    assert why.startswith("no threshold reaches") and threshold == 0.8


def test_the_alert_budget_rule_flags_its_share_of_legitimate_rows_whatever_the_fraud_share():
    rng = np.random.default_rng(1)
    legit = rng.random(10_000)
    for fraud_rows in (100, 5_000):  # a slice with few fraud labels, and one where fraud labels came first
        y = np.r_[np.zeros(10_000), np.ones(fraud_rows)]
        s = np.r_[legit, 0.5 + rng.random(fraud_rows) / 2]
        threshold, why = choose_threshold(y, s, "alert_budget", 0.5, 0.04)
        assert (legit >= threshold).mean() == pytest.approx(0.04, abs=1e-4) and "legitimate" in why
    with pytest.raises(ValueError):
        choose_threshold(np.ones(10), legit[:10], "alert_budget", 0.5, 0.04)  # no legitimate rows
    with pytest.raises(ValueError):
        choose_threshold(np.zeros(10), legit[:10], "precision", 0.5, 0.04)  # no fraud: no precision to reach


def test_a_registry_client_for_one_root_leaves_every_other_root_its_own_store(tmp_path, monkeypatch):
    import mlflow

    # Given no store chosen in the environment, and two configs with roots of their own
    monkeypatch.delenv(ENV_URI, raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    first, second = (load_config("local", root=tmp_path / name) for name in ("first", "second"))
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        # When MLflow is pointed at the first one's store
        client = registry_client(first)
        # Then MLflow uses it, and the second config still names its own (nothing was left in the environment)
        assert client.tracking_uri == mlflow.get_tracking_uri() == mlflow.get_registry_uri() == tracking_uri(first)
        assert tracking_uri(second) == f"sqlite:///{tmp_path / 'second' / 'mlflow' / 'mlflow.db'}"
        assert ENV_URI not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
        # and a store the user chose in the environment still wins, and stays chosen
        monkeypatch.setenv(ENV_URI, tracking_uri(second))
        assert registry_client(first).tracking_uri == os.environ[ENV_URI] == tracking_uri(second)
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


@pytest.fixture
def scratch_mlflow(tmp_path, monkeypatch):
    """An MLflow store of this test's own; the process's tracking and registry URIs are put back after
    (mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI, which the platform's config honours)."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


def test_a_model_that_cannot_be_scored_is_stopped_before_any_alias_moves(scratch_mlflow, tmp_path):
    import mlflow
    import mlflow.pyfunc

    from training.validation import ValidationFailed, model_scores

    class Broken(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return np.full(len(model_input), np.nan)

    uri = scratch_mlflow
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("broken", artifact_location=str(tmp_path / "artifacts")))
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=Broken(), registered_model_name="broken",
                                input_example=pd.DataFrame({"amount": [1.0]}))
    with pytest.raises(ValidationFailed, match="non-finite scores"):
        model_scores("models:/broken/1", pd.DataFrame({"amount": [1.0, 2.0]}))
    assert mlflow.MlflowClient(uri, uri).get_registered_model("broken").aliases == {}
