"""The rows monitoring compares: a model's predictions from every scoring table, one per transaction."""

from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.errors import TableNotFound
from lakehouse.tables import union_all


def current_predictions(tables: list[str], read: Callable[[str], DataFrame | None], model: Column) -> DataFrame:
    """The predictions `model` selects from `tables` (batch first, then streaming): earlier tables win a txn."""
    frames = [df.where(model).withColumn("_rank", F.lit(rank))
              for rank, df in enumerate(read(name) for name in tables) if df is not None]
    if not frames:
        raise TableNotFound(f"no predictions yet in {', '.join(tables)}", hint="run score_batch or score_stream first")
    union = union_all(frames)
    first = F.row_number().over(Window.partitionBy("txn_id").orderBy("_rank"))
    return union.withColumn("_first", first).where("_first = 1").drop("_first", "_rank")
