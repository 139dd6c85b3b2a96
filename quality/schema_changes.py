"""Source shape changes (a new field, a missing field, a changed type), found per arrival file.

Row defects (one bad amount) are the refine step's business; a *shape* change is what most of a
file's parsable rows agree on. Each table's `schema_policy` decides: evolve the table, quarantine
the file's rows, or fail the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

MAJORITY = 0.5


@dataclass
class ShapeChange:
    source_file: str
    new_fields: list[str] = field(default_factory=list)
    missing_fields: list[str] = field(default_factory=list)
    retyped_fields: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"new field {f}" for f in self.new_fields]
        parts += [f"missing field {f}" for f in self.missing_fields]
        parts += [f"type of {f} changed" for f in self.retyped_fields]
        return f"{self.source_file.rsplit('/', 2)[-2:][0]}: " + ", ".join(parts)


def _typed(col, kind: str):
    return F.try_to_timestamp(col) if kind == "timestamp" else col.try_cast(kind)


def detect_shape_changes(batch: DataFrame, fields: tuple[str, ...], types: dict[str, str]) -> list[ShapeChange]:
    """Per source file: fields most rows add, lack, or carry with another type (JSON sources)."""
    keys = F.json_object_keys("raw")
    parsable = batch.where(keys.isNotNull()).select("_source_file", "raw", keys.alias("_keys"))
    totals = {r[0]: r[1] for r in parsable.groupBy("_source_file").count().collect()}
    if not totals:
        return []
    seen: dict[str, dict[str, int]] = {}
    for r in (parsable.select("_source_file", F.explode("_keys").alias("k"))
              .groupBy("_source_file", "k").count().collect()):
        seen.setdefault(r["_source_file"], {})[r["k"]] = r["count"]
    retyped: dict[str, dict[str, int]] = {}
    if types:
        schema = T.StructType([T.StructField(f, T.StringType()) for f in types])
        parsed = parsable.select("_source_file", F.from_json("raw", schema).alias("j"))
        aggs = [F.sum((F.col(f"j.{f}").isNotNull() & _typed(F.col(f"j.{f}"), k).isNull()).cast("int")).alias(f)
                for f, k in types.items()]
        for r in parsed.groupBy("_source_file").agg(*aggs).collect():
            retyped[r["_source_file"]] = {f: r[f] or 0 for f in types}
    changes = []
    for source, total in sorted(totals.items()):
        counts = seen.get(source, {})
        change = ShapeChange(
            source_file=source,
            new_fields=sorted(k for k, n in counts.items() if k not in fields and n > MAJORITY * total),
            missing_fields=sorted(f for f in fields if counts.get(f, 0) <= MAJORITY * total),
            retyped_fields=sorted(f for f, n in retyped.get(source, {}).items() if n > MAJORITY * total),
        )
        if change.new_fields or change.missing_fields or change.retyped_fields:
            changes.append(change)
    return changes
