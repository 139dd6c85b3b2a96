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

from lakehouse.refine import typed

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


def detect_shape_changes(batch: DataFrame, fields: tuple[str, ...], types: dict[str, str]) -> list[ShapeChange]:
    """Per source file: fields most rows add, lack, or carry with another type (JSON sources).

    One pass: each parsable row becomes the tags it counts for (`*` for the row, `k:<field>` for
    each of its keys, `t:<field>` for a value that does not cast to the field's type), counted per file.
    """
    keys = F.json_object_keys("raw")
    tags = [F.array(F.lit("*")), F.transform(keys, lambda k: F.concat(F.lit("k:"), k))]
    if types:
        schema = T.StructType([T.StructField(f, T.StringType()) for f in types])
        parsed = F.from_json("raw", schema)
        retyped = [F.when(parsed[f].isNotNull() & typed(parsed[f], k).isNull(), F.lit(f"t:{f}"))
                   for f, k in types.items()]
        tags.append(F.filter(F.array(*retyped), lambda t: t.isNotNull()))
    counted = (batch.where(keys.isNotNull()).select("_source_file", F.explode(F.concat(*tags)).alias("tag"))
               .groupBy("_source_file", "tag").count().collect())
    totals: dict[str, int] = {}
    seen: dict[str, dict[str, int]] = {}
    retyped_counts: dict[str, dict[str, int]] = {}
    for r in counted:
        source, tag, n = r["_source_file"], r["tag"], r["count"]
        if tag == "*":
            totals[source] = n
        elif tag.startswith("k:"):
            seen.setdefault(source, {})[tag[2:]] = n
        else:
            retyped_counts.setdefault(source, {})[tag[2:]] = n
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
