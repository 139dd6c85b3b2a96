"""meta.model_deployments: every move of a serving alias, who made it, from which version, and why.

The registry holds only where an alias points now; this table keeps the history, so "which model
decided this transaction, and why was that version serving then" has an answer later.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lakehouse.config import Config
from lakehouse.identity import current_user
from lakehouse.schemas import Int32, spark_schema

DEPLOYMENTS_TABLE = "meta.model_deployments"
DECISIONS_TABLE = "meta.model_decisions"  # validation's verdicts (training.validation.Decision rows)


@dataclass
class Deployment:
    """A row of meta.model_deployments: one alias moved (or a strategy started or stopped)."""

    deployed_at: dt.datetime
    model_name: str
    alias: str  # champion | challenger | shadow | canary
    action: str  # promote | challenge | shadow_start | canary_start | shadow_stop | canary_stop | rollback
    from_version: Int32 | None
    to_version: Int32 | None
    reason: str
    actor: str
    run_id: str | None  # the job run (meta.lineage) that moved it


def deployment(cfg: Config, alias: str, action: str, from_version: int | None, to_version: int | None,
               reason: str, run_id: str | None) -> Deployment:
    return Deployment(dt.datetime.now(dt.timezone.utc), cfg.training.model_name, alias, action, from_version,
                      to_version, reason, current_user(), run_id)


def record_deployments(spark, cfg: Config, rows: list[Deployment]) -> None:
    from lakehouse.tables import append_rows

    if not rows:
        return
    append_rows(spark, cfg.table(DEPLOYMENTS_TABLE), rows, spark_schema(Deployment))
