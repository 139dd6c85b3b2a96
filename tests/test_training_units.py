"""The pieces training relies on, checked against references: metrics, preprocessing, decisions."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve

from registry.metrics import average_precision, recall_at_precision, threshold_metrics
from training.preprocessing import fit_preprocessor
from training.validation import decide


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


def test_the_champion_moves_only_on_a_win_by_the_margin():
    assert decide(0.5, None, 0.0, "auc_pr")[0]
    assert decide(0.61, 0.60, 0.0, "auc_pr")[0]
    assert not decide(0.60, 0.60, 0.0, "auc_pr")[0]
    assert not decide(0.61, 0.60, 0.02, "auc_pr")[0]
    assert not decide(float("nan"), 0.60, 0.0, "auc_pr")[0]
