"""Lines the demo prints about the operating loop: what continuous training decided, how each rollout ended."""

from __future__ import annotations

from lakehouse.config import Config
from lakehouse.tables import current_version, read_table


def demo_report(spark, cfg: Config) -> list[str]:
    """A `tidewater.demo_reports` entry point: every training decision, review and alias move, oldest first."""
    lines = []
    triggers, reviews, moves = (cfg.table(n) for n in ("meta.training_triggers", "meta.deployment_reviews",
                                                       "meta.model_deployments"))
    if current_version(spark, triggers) is not None:
        for r in read_table(spark, triggers).orderBy("decided_at").collect():
            fired = ", ".join(r["fired"]) or "none"
            lines.append(f"continuous training {r['decided_at']:%H:%M:%S}: triggers fired: {fired}; {r['action']}: "
                         f"{r['outcome']}")
    if current_version(spark, reviews) is not None:
        for r in read_table(spark, reviews).orderBy("reviewed_at").collect():
            lines.append(f"review {r['reviewed_at']:%H:%M:%S}: v{r['version']} ({r['alias']}) vs champion "
                         f"v{r['champion_version']}: {r['verdict']} ({r['reason']})")
    if current_version(spark, moves) is not None:
        for r in read_table(spark, moves).orderBy("deployed_at").collect():
            lines.append(f"deployment {r['deployed_at']:%H:%M:%S}: {r['action']} {r['alias']}: "
                         f"v{r['from_version'] or '-'} -> v{r['to_version'] or '-'} by {r['actor']} ({r['reason']})")
    if lines:
        lines.append("(history: tidewater models history; per transaction: tidewater models decided TXN_ID)")
    return lines
