"""Lines the demo prints about scoring and drift (a `tidewater.demo_reports` entry point)."""

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
    events = cfg.table("meta.drift_events")
    if current_version(spark, events) is not None:
        rows = (read_table(spark, events).where(F.col("slice_value") == "__all__")
                .orderBy("window_start").collect())
        for r in rows:
            lines.append(f"drift {r['window_start']:%Y-%m-%d}: {', '.join(r['drifted_features'])}")
        if not rows:
            lines.append("drift: no window drifted overall")
    return lines
