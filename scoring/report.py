"""Lines the demo prints about scoring (a `tidewater.demo_reports` entry point)."""

from __future__ import annotations

from pyspark.sql import functions as F

from lakehouse.tables import current_version, read_table


def demo_report(spark, cfg) -> list[str]:
    """Per prediction table: volume, the flagged share, and the fraud share among the labels that arrived."""
    lines = []
    labels_ref = cfg.table("silver.labels")
    labels = read_table(spark, labels_ref).select("txn_id", "is_fraud") \
        if current_version(spark, labels_ref) is not None else None
    for name in ("gold.predictions", "gold.predictions_stream"):
        ref = cfg.table(name)
        if current_version(spark, ref) is None:
            continue
        scored = read_table(spark, ref)
        if labels is not None:
            scored = scored.join(labels, "txn_id", "left")
        fraud = F.col("is_fraud").cast("int") if labels is not None else F.lit(None).cast("int")
        r = scored.agg(F.count("*").alias("n"), F.sum("decision").alias("flagged"), F.max("model_version").alias("v"),
                       F.count(fraud).alias("labelled"), F.sum(fraud).alias("fraud")).first()
        flagged, n = r["flagged"] or 0, r["n"]
        fraud_share = f"{r['fraud'] / r['labelled']:.1%}" if r["labelled"] else "n/a"
        lines.append(f"{name}: {n} predictions by {cfg.training.model_name if cfg.training else 'model'} "
                     f"v{r['v']}, {flagged} flagged for review ({flagged / n:.1%}; fraud among the "
                     f"{r['labelled']} labelled: {fraud_share})")
    return lines
