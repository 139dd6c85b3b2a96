"""One transaction's lineage: its prediction, the model version and training set behind it, down to
the landing file it arrived in. Read with delta-rs (no JVM) from meta.lineage and the txn's rows.
"""

from __future__ import annotations

import json
import re

from lakehouse import delta_reader
from lakehouse.config import Config
from lakehouse.errors import TidewaterError
from lakehouse.lineage_graph import upstream_chain

SOURCE = "transactions"  # the source a transaction arrives from


class TransactionNotFound(TidewaterError):
    """No prediction row names the transaction."""


def _bronze_rows(cfg: Config, txn_id: str, reader) -> list[dict]:
    """The bronze rows whose raw payload is this transaction (the raw line is kept as received)."""
    import pyarrow.compute as pc

    found = reader.read_rows(cfg, cfg.sources[SOURCE].bronze, lambda t: pc.match_substring(t["raw"], txn_id))
    out = []
    for row in found:
        try:
            if json.loads(row["raw"]).get("txn_id") == txn_id:
                out.append(row)
        except ValueError:  # a malformed line that merely mentions the id
            continue
    return out


def _annotate(node: dict, facts: dict[str, dict]) -> None:
    """Attach what the txn's own rows say to the nodes of their tables, all the way down."""
    if node["table"] in facts:
        node["txn"] = facts[node["table"]]
    for child in node["inputs"]:
        _annotate(child, facts)


def txn_filter(txn_id: str):
    """A `where` for read_rows: the rows of one transaction."""
    import pyarrow.compute as pc

    def this_txn(t):  # a whole-value match: any Arrow scalar or array built from Python imports pandas (~0.3 s)
        return pc.match_substring_regex(t["txn_id"], f"^{re.escape(txn_id)}$")
    return this_txn


def no_prediction(cfg: Config, txn_id: str) -> TransactionNotFound:
    return TransactionNotFound(f"no prediction for transaction {txn_id!r} in {', '.join(cfg.drift.current_tables)}",
                               hint="pick one with `tidewater sql \"SELECT txn_id FROM gold.predictions LIMIT 5\"`")


def transaction_lineage(cfg: Config, txn_id: str, reader=delta_reader) -> dict:
    """{txn_id, predictions: [{row..., chain}], silver, bronze, landing_files}: the txn's whole story.

    `reader` reads the rows: delta_reader (no JVM), or lakehouse.spark_reader.SparkReader where it cannot.
    """
    this_txn = txn_filter(txn_id)
    rows = reader.read_rows(cfg, "meta.lineage")
    runs = {r["run_id"]: r for r in rows}
    predictions = []
    for table in cfg.drift.current_tables:
        for row in reader.read_rows(cfg, table, this_txn):
            run = runs.get(row.get("run_id"))
            written = next((o["version"] for o in (run or {}).get("outputs", []) if o["table"] == table), None)
            keep = ("model_name", "model_version", "model_alias", "score", "decision", "threshold", "scored_at",
                    "mlflow_run_id", "run_id")
            predictions.append({"table": table, **{k: row.get(k) for k in keep},
                                "chain": upstream_chain(rows, table, written)})
    if not predictions:
        raise no_prediction(cfg, txn_id)
    keep = ("txn_id", "event_time", "_batch_id", "_source_file", "_ingested_at")
    silver = [{k: r.get(k) for k in keep} for r in reader.read_rows(cfg, f"silver.{SOURCE}", this_txn)]
    bronze = [{k: v for k, v in r.items() if k != "raw"} for r in _bronze_rows(cfg, txn_id, reader)]
    facts = {f"silver.{SOURCE}": silver[0] if silver else {},
             cfg.sources[SOURCE].bronze: {"rows": bronze},
             f"landing:{SOURCE}": {"files": sorted({r["_source_file"] for r in bronze})}}
    for p in predictions:
        _annotate(p["chain"], facts)
    return {"txn_id": txn_id, "predictions": predictions, "silver": facts[f"silver.{SOURCE}"], "bronze": bronze,
            "landing_files": facts[f"landing:{SOURCE}"]["files"]}


def _node_line(node: dict) -> str:
    run = node["produced_by"]
    version = "" if node["version"] is None else f"@v{node['version']}"
    line = f"{node['table']}{version}"
    if run is not None:
        line += f"  <- {run['job']} run {run['run_id']}, code {(run['code_version'] or '?')[:12]}, {run['ended_at']:%Y-%m-%d %H:%M:%S}"
    txn = node.get("txn")
    if txn and "files" in txn:
        line += "  arrived in " + ", ".join(txn["files"])
    elif txn and "rows" in txn:
        line += "  this txn: " + "; ".join(f"batch {r['_batch_id']}, ingested {r['_ingested_at']:%Y-%m-%d %H:%M:%S}"
                                          for r in txn["rows"])
    elif txn:
        line += f"  this txn: event_time {txn.get('event_time')}, batch {txn.get('_batch_id')}"
    return line


def chain_text(node: dict, seen: set, depth: int = 1) -> list[str]:
    """Indented lines; a table version already shown is named again but not expanded twice."""
    key = (node["table"], node["version"])
    pad = "  " * depth
    if key in seen and node["inputs"]:
        return [f"{pad}{node['table']}@v{node['version']}  (as above)"]
    seen.add(key)
    lines = [pad + _node_line(node)]
    for child in node["inputs"]:
        lines += chain_text(child, seen, depth + 1)
    return lines


def lineage_text(story: dict) -> list[str]:
    lines = []
    for p in story["predictions"]:
        lines.append(f"{story['txn_id']}: score {p['score']:.4f} (decision {p['decision']} at {p['threshold']}) by "
                     f"{p['model_name']} v{p['model_version']} @{p['model_alias']} (MLflow run {p['mlflow_run_id']}) "
                     f"in {p['table']}")
        lines += chain_text(p["chain"], set())
    return lines
