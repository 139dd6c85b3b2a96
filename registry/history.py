"""Which model version decided a transaction, and why that version was serving when it did.

Read with delta-rs (no JVM) from the prediction tables, meta.model_deployments and
meta.model_decisions; `reader` may be lakehouse.spark_reader.SparkReader where delta-rs cannot.
"""

from __future__ import annotations

from lakehouse import delta_reader
from lakehouse.config import Config
from lakehouse.txn_lineage import no_prediction, txn_filter
from registry import contract
from registry.deployments import DECISIONS_TABLE, DEPLOYMENTS_TABLE


def deployment_history(cfg: Config, reader=delta_reader) -> list[dict]:
    """Every alias move, oldest first."""
    return sorted(reader.read_rows(cfg, DEPLOYMENTS_TABLE), key=lambda r: r["deployed_at"])


def serving_move(history: list[dict], alias: str, version: int, at) -> dict | None:
    """The move that put `version` behind `alias` most recently before `at`."""
    moves = [d for d in history if d["alias"] == alias and d["to_version"] == version and d["deployed_at"] <= at]
    return moves[-1] if moves else None


def who_decided(cfg: Config, txn_id: str, reader=delta_reader) -> list[dict]:
    """Per prediction of the transaction: the version, alias, score and decision, and why it was serving."""
    history = deployment_history(cfg, reader)
    decisions = sorted(reader.read_rows(cfg, DECISIONS_TABLE), key=lambda r: r["decided_at"])
    out = []
    for table in cfg.drift.current_tables:
        for row in reader.read_rows(cfg, table, txn_filter(txn_id)):
            move = serving_move(history, row["model_alias"], row["model_version"], row["scored_at"])
            judged = [d for d in decisions if d["challenger_version"] == row["model_version"]]
            out.append({
                "txn_id": txn_id, "table": table, "model_name": row["model_name"],
                "model_version": row["model_version"], "alias": row["model_alias"], "route": row.get("route"),
                "decided": row.get("route", row["model_alias"]) in (contract.CHAMPION, contract.CANARY),
                "score": row["score"],
                "threshold": row["threshold"], "decision": row["decision"], "scored_at": row["scored_at"],
                "serving_since": move["deployed_at"] if move else None,
                "serving_because": f"{move['action']} by {move['actor']}: {move['reason']}" if move else
                                   "no recorded move put this version behind the alias before it scored",
                "validation": judged[-1]["reason"] if judged else None,
            })
    if not out:
        raise no_prediction(cfg, txn_id)
    return out
