"""Source shape changes (a new field, a missing field, a changed type), found per arrival file.

Row defects (one bad amount) are the refine step's business; a *shape* change is what most of a
file's parsable rows agree on. Each table's `schema_policy` decides: evolve the table, quarantine
the file's rows, or fail the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.refine import SHAPE_COLUMNS

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


def detect_shape_changes(classified: DataFrame, fields: tuple[str, ...], types: dict[str, str],
                         payload: DataFrame | None = None) -> list[ShapeChange]:
    """Per source file: fields most rows add, lack, or carry with another type (JSON sources).

    Reads what `classify(shape=True)` noted of each line, so no line is parsed again: one aggregate per
    file of the JSON objects, rows holding each field, rows whose typed value does not convert, rows
    with a field not configured. Only a file where most rows carry such a field can have a new one, so
    only those files' extra fields are named, from their raw lines (in `payload`, the classified rows
    with every raw line, where `classified` keeps only some).
    """
    present, extra, retyped = (F.col(c) for c in SHAPE_COLUMNS)
    sums = [F.sum(F.shiftright(present, i).bitwiseAND(1)).alias(f"k:{f}") for i, f in enumerate(fields)]
    sums += [F.sum(F.shiftright(retyped, j).bitwiseAND(1)).alias(f"t:{f}") for j, f in enumerate(types)]
    objects = classified.where(present.isNotNull())
    per_file = (objects.groupBy("_source_file")
                .agg(F.count(F.lit(1)).alias("*"), F.sum(extra.cast("long")).alias("+"), *sums)
                .collect())
    totals = {r["_source_file"]: r["*"] for r in per_file}
    seen = {r["_source_file"]: {f: r[f"k:{f}"] for f in fields} for r in per_file}
    retyped_counts = {r["_source_file"]: {f: r[f"t:{f}"] for f in types} for r in per_file}
    widened = [r["_source_file"] for r in per_file if r["+"] > MAJORITY * r["*"]]
    if widened:
        added = F.array_except(F.json_object_keys("raw"), F.array(*[F.lit(f) for f in fields]))
        lines = (payload if payload is not None else classified).where(present.isNotNull())
        for r in (lines.where(F.col("_source_file").isin(widened))
                  .select("_source_file", F.explode(added).alias("field"))
                  .groupBy("_source_file", "field").count().collect()):
            seen[r["_source_file"]][r["field"]] = r["count"]
    changes = []
    for source, total in sorted(totals.items()):
        counts = seen.get(source, {})
        change = ShapeChange(
            source_file=source,
            new_fields=sorted(k for k, n in counts.items() if k not in fields and n > MAJORITY * total),
            missing_fields=sorted(f for f in fields if counts.get(f, 0) <= MAJORITY * total),
            retyped_fields=sorted(f for f, n in retyped_counts.get(source, {}).items() if n > MAJORITY * total),
        )
        if change.new_fields or change.missing_fields or change.retyped_fields:
            changes.append(change)
    return changes
