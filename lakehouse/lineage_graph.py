"""The lineage graph over meta.lineage rows, in plain Python: Spark and delta-rs readers share it.

Each successful run names, per output, the inputs it was built from; following those edges from
a table version back to its sources gives the chain a reader asks for.
"""

from __future__ import annotations

RUN_FIELDS = ("job", "run_id", "code_version", "started_at", "ended_at", "metrics")


def producer_of(rows: list[dict], table: str, version: int) -> dict | None:
    """The successful run that wrote `table` at `version` (the first whose write reached it), with its output."""
    found = []
    for row in rows:
        if row["status"] != "succeeded":
            continue
        for out in row["outputs"]:
            before = -1 if out["version_before"] is None else out["version_before"]
            if out["table"] == table and out["version"] is not None and before < version <= out["version"]:
                found.append((row["ended_at"], row, out))
    if not found:
        return None
    _, row, out = min(found, key=lambda item: item[0])
    return {**row, "output": out}


def built_from(run: dict) -> list[dict]:
    """The input versions the run's output was built from (all inputs for rows that predate per-output lineage)."""
    names = run["output"].get("built_from")
    return [i for i in run["inputs"] if names is None or i["table"] in names]


def upstream_chain(rows: list[dict], table: str, version: int | None, depth: int = 12) -> dict:
    """The tree behind table@version: its producer, then each of its inputs' producers, recursively."""
    node: dict = {"table": table, "version": version, "produced_by": None, "inputs": []}
    run = producer_of(rows, table, version) if version is not None else None
    if run is None or depth == 0:
        return node
    node["produced_by"] = {k: run[k] for k in RUN_FIELDS}
    node["inputs"] = [upstream_chain(rows, i["table"], i["version"], depth - 1) for i in built_from(run)]
    return node


def chain_lines(node: dict, depth: int = 0) -> list[str]:
    """The tree as indented lines: table@version <- job run, code version, time."""
    pad = "  " * depth
    run = node["produced_by"]
    version = "?" if node["version"] is None else node["version"]
    if run is None:
        lines = [f"{pad}{node['table']}@v{version}  (no recorded producer)"]
    else:
        lines = [f"{pad}{node['table']}@v{version}  <- {run['job']} run {run['run_id']} "
                 f"code {(run['code_version'] or '?')[:12]} at {run['ended_at']}"]
    for child in node["inputs"]:
        lines += chain_lines(child, depth + 1)
    return lines
