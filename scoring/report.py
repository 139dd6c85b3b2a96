"""Lines the demo prints about scoring (a `tidewater.demo_reports` entry point)."""

from __future__ import annotations

from pyspark.sql import functions as F

from lakehouse.tables import current_version, read_table


def demo_report(spark, cfg) -> list[str]:
    """Per prediction table and route: volume, model versions, the flagged share, and the fraud share
    among the labels that arrived (labelled shares run high: fraud labels arrive first)."""
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
        for r in scored.groupBy("route").agg(
                F.count("*").alias("n"), F.sum("decision").alias("flagged"),
                F.array_sort(F.collect_set("model_version")).alias("versions"),
                F.count(fraud).alias("labelled"), F.sum(fraud).alias("fraud")).orderBy("route").collect():
            flagged, n = r["flagged"] or 0, r["n"]
            fraud_share = f"{r['fraud'] / r['labelled']:.1%}" if r["labelled"] else "n/a"
            versions = ", ".join(f"v{v}" for v in r["versions"])
            lines.append(f"{name} ({r['route']}): {n} predictions by {versions}, {flagged} flagged "
                         f"({flagged / n:.1%}; fraud among the {r['labelled']} labelled: {fraud_share})")
    return lines
