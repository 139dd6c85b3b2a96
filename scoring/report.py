"""Lines the demo prints about scoring (a `tidewater.demo_reports` entry point)."""

from __future__ import annotations

from pyspark.sql import functions as F

from lakehouse.tables import current_version, read_table


def demo_report(spark, cfg) -> list[str]:
    lines = []
    for name in ("gold.predictions", "gold.predictions_stream"):
        ref = cfg.table(name)
        if current_version(spark, ref) is None:
            continue
        r = read_table(spark, ref).agg(F.count("*").alias("n"), F.sum("decision").alias("flagged"),
                                       F.max("model_version").alias("v")).first()
        lines.append(f"{name}: {r['n']} predictions by {cfg.training.model_name if cfg.training else 'model'} "
                     f"v{r['v']}, {r['flagged'] or 0} flagged for review")
    return lines
