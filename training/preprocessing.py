"""The feature transform that travels with the model, so training and scoring encode rows alike.

One fitted state (saved as JSON beside the weights), two renderings of the same formulas:
pandas for the pyfunc model wherever it scores, Spark SQL for encoding the training set in bulk
(the training environment's pyarrow 14 rules out pandas UDFs there). Tests hold the two equal.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

CLIP = 10.0  # standardized values beyond this are outliers, not information


@dataclass
class Preprocessor:
    numeric: list[str]
    categorical: list[str]
    means: dict[str, float]
    stds: dict[str, float]
    log: dict[str, bool]  # log1p before standardizing (non-negative, heavy-tailed columns)
    vocab: dict[str, list[str]]  # index 0 is "unknown or missing"

    @property
    def cardinalities(self) -> list[int]:
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def numeric_matrix(self, pdf: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(pdf), len(self.numeric)), dtype=np.float32)
        for j, col in enumerate(self.numeric):
            x = pd.to_numeric(pdf[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if self.log[col]:
                x = np.log1p(np.clip(x, 0.0, None))
            z = (x - self.means[col]) / self.stds[col]
            out[:, j] = np.clip(np.nan_to_num(z, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)
        return out

    def category_matrix(self, pdf: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(pdf), len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            index = {v: i + 1 for i, v in enumerate(self.vocab[col])}
            out[:, j] = pdf[col].map(lambda v: 0 if pd.isna(v) else index.get(str(v), 0)).to_numpy(dtype=np.int64)
        return out

    def spark_columns(self, label: str | None = None) -> list:
        """The same transform as Spark columns n0..nk (float) and c0..cm (long), plus the label as float."""
        from itertools import chain

        from pyspark.sql import functions as F

        cols = []
        for j, col in enumerate(self.numeric):
            x = F.col(col).cast("double")
            if self.log[col]:
                x = F.when(x.isNull(), None).otherwise(F.log1p(F.greatest(x, F.lit(0.0))))
            z = (x - F.lit(self.means[col])) / F.lit(self.stds[col])
            z = F.when(z.isNull() | F.isnan(z), 0.0).otherwise(F.least(F.greatest(z, F.lit(-CLIP)), F.lit(CLIP)))
            cols.append(z.cast("float").alias(f"n{j}"))
        for j, col in enumerate(self.categorical):
            index = F.create_map(*chain.from_iterable((F.lit(v), F.lit(i + 1)) for i, v in enumerate(self.vocab[col])))
            code = F.try_element_at(index, F.col(col).cast("string")) if self.vocab[col] else F.lit(None)
            cols.append(F.coalesce(code, F.lit(0)).cast("long").alias(f"c{j}"))
        if label:
            cols.append(F.col(label).cast("float").alias("label"))
        return cols

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Preprocessor":
        return cls(**json.loads(text))


def fit_preprocessor(train_df, numeric: list[str], categorical: list[str], max_categories: int) -> Preprocessor:
    """Fit on the training split in Spark: a few aggregates, never the raw rows on the driver."""
    from pyspark.sql import functions as F

    mins = train_df.agg(*[F.min(F.col(c).cast("double")).alias(c) for c in numeric]).first().asDict()
    log = {c: mins[c] is not None and mins[c] >= 0 for c in numeric}
    scaled = train_df.select(*[
        (F.log1p(F.col(c).cast("double")) if log[c] else F.col(c).cast("double")).alias(c) for c in numeric])
    stats = scaled.agg(*[F.mean(c).alias(f"m_{c}") for c in numeric],
                       *[F.stddev_pop(c).alias(f"s_{c}") for c in numeric]).first().asDict()
    means = {c: float(stats[f"m_{c}"] or 0.0) for c in numeric}
    stds = {c: float(stats[f"s_{c}"]) if stats[f"s_{c}"] else 1.0 for c in numeric}
    vocab = {}
    for c in categorical:
        rows = (train_df.where(F.col(c).isNotNull()).groupBy(c).count()
                .orderBy(F.desc("count"), F.asc(c)).limit(max_categories).collect())
        vocab[c] = [str(r[c]) for r in rows]
    return Preprocessor(list(numeric), list(categorical), means, stds, log, vocab)
