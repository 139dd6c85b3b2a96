"""The rows monitoring compares: a model's predictions from every scoring table, one per transaction."""

from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.errors import TableNotFound
from lakehouse.tables import union_all
from scoring.predictions import PREDICTION_SCHEMA

# What monitoring reads of a scoring table: a gold.predictions row. gold.decisions_online carries these
# columns and more (reasons, latency); only these are compared.
PREDICTION_COLUMNS = [f.name for f in PREDICTION_SCHEMA.fields]


def current_predictions(tables: list[str], read: Callable[[str], DataFrame | None], model: Column) -> DataFrame:
    """The predictions `model` selects from `tables` (batch, streaming, then the API's decisions): earlier
    tables win a txn."""
    frames = [df.where(model).select(*PREDICTION_COLUMNS).withColumn("_rank", F.lit(rank))
              for rank, df in enumerate(read(name) for name in tables) if df is not None]
    if not frames:
        raise TableNotFound(f"no predictions yet in {', '.join(tables)}", hint="run score_batch or score_stream first")
    union = union_all(frames)
    first = F.row_number().over(Window.partitionBy("txn_id").orderBy("_rank"))
    return union.withColumn("_first", first).where("_first = 1").drop("_first", "_rank")
