"""Lines the demo prints about the operating loop: what continuous training decided, how fair each version was,
how each rollout ended."""

from __future__ import annotations

import json

from lakehouse.config import Config
from lakehouse.tables import current_version, read_table
from training.fairness import fairness_summary


def _fairness_line(row) -> str:
    """One validation's fairness verdict (decisions recorded before the gate existed have none)."""
    report = row.asDict().get("fairness")
    verdict = fairness_summary(json.loads(report)) if report else "not assessed"
    return f"fairness: v{row['challenger_version']}: {verdict}"


def demo_report(spark, cfg: Config) -> list[str]:
    """A `tidewater.demo_reports` entry point: training decisions, reviews and alias moves, in time order."""
    events = []
    for name, when, line in (
            ("meta.training_triggers", "decided_at",
             lambda r: f"continuous training: triggers fired: {', '.join(r['fired']) or 'none'}; {r['action']}: "
                       f"{r['outcome']}"),
            ("meta.deployment_reviews", "reviewed_at",
             lambda r: f"review: v{r['version']} ({r['alias']}) vs champion v{r['champion_version']}: "
                       f"{r['verdict']} ({r['reason']})"),
            ("meta.model_decisions", "decided_at", _fairness_line),
        ("meta.model_deployments", "deployed_at",
             lambda r: f"deployment: {r['action']} {r['alias']}: v{r['from_version'] or '-'} -> "
                       f"v{r['to_version'] or '-'} by {r['actor']} ({r['reason']})")):
        ref = cfg.table(name)
        if current_version(spark, ref) is not None:
            events += [(r[when], line(r)) for r in read_table(spark, ref).collect()]
    lines = [f"{at:%H:%M:%S} {text}" for at, text in sorted(events, key=lambda e: e[0])]
    if lines:
        lines.append("(history: tidewater models history; per transaction: tidewater models decided TXN_ID)")
    return lines
