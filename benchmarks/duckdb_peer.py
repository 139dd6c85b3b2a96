"""DuckDB + delta-rs doing Tidewater's lakehouse stages on the same landing files: the benchmark's peer.

The work of a first run of ingest_bronze, refine_silver and build_gold on a fresh root, in DuckDB SQL
(bronze's lines split by numpy and Arrow), with delta-rs writing the Delta tables under the peer's own
root. The rules are Tidewater's own declarations (the entity rules of lakehouse/refine.py, conf
`quality:` checks and currencies), rendered as SQL here where Spark renders them as columns. The peer
keeps no checkpoints: each run reads the whole landing folder and rewrites its tables. `verify` holds
the peer's tables against Spark's, row for row, without a JVM; with --verify the command exits 1 on
any difference.

    .venv/bin/python benchmarks/duckdb_peer.py --landing DIR --root DIR [--verify SPARK_ROOT] [--json FILE]
"""

from __future__ import annotations

import argparse
import codecs
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import mmap
import os
import re
import sys
import time
import uuid
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and benchmarks/lakehouse.py would
# shadow the `lakehouse` package whose rules it renders.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import deltalake  # noqa: E402
import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset  # noqa: E402,F401 - delta-rs hands DuckDB its tables as datasets: loaded before the timing
from deltalake import DeltaTable, write_deltalake  # noqa: E402

from lakehouse.config import CheckConf, Config, load_config  # noqa: E402
from lakehouse.delta_reader import delta_exists  # noqa: E402
from lakehouse.errors import QualityGateFailed  # noqa: E402
from lakehouse.pii import pii_key  # noqa: E402
from lakehouse.refine import (CUSTOMER_RULES, LABEL_RULES, MERCHANT_RULES, META_COLUMNS,  # noqa: E402
                              TRANSACTION_RULES, EntityRules)
from lakehouse.schemas import spark_schema  # noqa: E402
from lakehouse.silver import SCD2_ATTRIBUTES  # noqa: E402
from lakehouse.tables import append_rows  # noqa: E402
from quality.results import RESULTS_TABLE, STATUS_FOR_POLICY, ResultRow  # noqa: E402
from quality.schema_changes import MAJORITY, ShapeChange  # noqa: E402

# In refine_silver's order: dimensions first.
ENTITIES = {"merchants": MERCHANT_RULES, "customers": CUSTOMER_RULES, "transactions": TRANSACTION_RULES,
            "labels": LABEL_RULES}
# Which arrival silver keeps per key (lakehouse/silver.py `refiners`): key, then the winner's order.
KEEP = {"merchants": ("merchant_id", "updated_at DESC, _ingested_at DESC"),
        "transactions": ("txn_id", "_ingested_at, _source_file"),
        "labels": ("txn_id", "label_time DESC, _ingested_at DESC")}
HISTORY = {"customers": ("customer_id", "updated_at")}  # type 2: key, the record's timestamp
SQL_TYPES = {"double": "DOUBLE", "timestamp": "TIMESTAMPTZ", "boolean": "BOOLEAN"}
STRUCTURAL = ("schema_change", "malformed_record", "null_key", "invalid_type", "missing_field")
GOLD_KEYS = {"gold.customer_daily_spend": ("customer_id", "event_date"),
             "gold.merchant_daily": ("merchant_id", "event_date"), "gold.fraud_kpis": ("event_date",)}
# Where and when a row was read: Spark escapes its file URIs and has its own clock.
READ_COLUMNS = ("_source_file", "_ingested_at")
# Bronze as Tidewater writes it: the line, where and when it was read, the file's size and time then.
BRONZE = pa.schema([("raw", pa.large_string()), ("_source_file", pa.string()), ("_batch_id", pa.string()),
                    ("_ingested_at", pa.timestamp("us", "UTC")), ("_file_size", pa.int64()),
                    ("_file_modified", pa.timestamp("us", "UTC"))])


def _lit(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def spark_round(expr: str, scale: int) -> str:
    """Spark's round of a double: HALF_UP on its shortest decimal form (DuckDB's round() works on the
    binary value and takes 1.005 down)."""
    return f"CAST(CAST({expr} AS VARCHAR) AS DECIMAL(38, {scale}))::DOUBLE"


def connect() -> duckdb.DuckDBPyConnection:
    """A DuckDB session in Spark's session time zone (conf spark.sql.session.timeZone: UTC)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def write(con: duckdb.DuckDBPyConnection, sql: str, path: str) -> None:
    """Replace the Delta table at `path` with the query's rows, handed to delta-rs as one Arrow table.

    Silver's and gold's queries end in a window, an aggregate or a temp table that DuckDB holds whole
    anyway: streamed to delta-rs in record batches instead, 10M rows peaked as high (14.9 GiB, in
    silver's window) and took as long. Bronze's lines, which need no SQL, go straight from the files
    to delta-rs (ingest_bronze)."""
    write_deltalake(path, con.sql(sql).arrow(), mode="overwrite", schema_mode="overwrite")


def scan(con: duckdb.DuckDBPyConnection, view: str, path: str) -> None:
    """Let DuckDB's SQL read a Delta table as `view` (delta-rs lists the files, DuckDB reads them)."""
    con.register(view, DeltaTable(path).to_pyarrow_dataset())


def spark_lines(path: Path) -> pa.Array:
    """A file's lines as Spark's text source reads them (Hadoop's LineReader): "\\n", "\\r" and "\\r\\n"
    each end a line, an empty line is a '' row, a UTF-8 byte order mark at the start is skipped, and
    text after the last line end is one more line (an empty file has none)."""
    with open(path, "rb") as f:  # mapped, not read: the lines are the one copy made
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""
    text = np.frombuffer(data, np.uint8)
    breaks = np.flatnonzero((text == 10) | (text == 13)) if data.find(b"\r") >= 0 else np.flatnonzero(text == 10)
    crlf = np.flatnonzero((text[breaks[:-1]] == 13) & (text[breaks[:-1] + 1] == 10))
    # Each line with its line end (a "\\r\\n" ends at its "\\n"): no other "\\r" or "\\n" is in it, so trimming
    # them off leaves the line.
    start = len(codecs.BOM_UTF8) if data[:3] == codecs.BOM_UTF8 else 0
    offsets = np.concatenate(([start], np.delete(breaks, crlf) + 1))
    if len(data) > offsets[-1]:
        offsets = np.append(offsets, len(data))
    lines = pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                  [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pc.ascii_rtrim(lines.cast(pa.large_string()), "\r\n")  # the cast checks UTF-8, as DuckDB's readers do


def bronze_rows(path: Path, header: str | None, at: dt.datetime) -> pa.Table:
    """One landing file's bronze rows: its lines (but a CSV header), where and when they were read, and
    the file's size and time in milliseconds (Spark's `_metadata`)."""
    stat, raw = path.stat(), spark_lines(path)
    if header is not None:
        raw = raw.filter(pc.not_equal(raw, header))
    where = f"file:{path}"
    batch = re.search(r"/(batch-[^/]+)/[^/]*$", where)
    values = [where, batch[1] if batch else "", at, stat.st_size, stat.st_mtime_ns // 1_000_000 * 1000]
    return pa.table([raw, *(pa.repeat(pa.scalar(v, t), len(raw)) for v, t in zip(values, BRONZE.types[1:]))],
                    schema=BRONZE)


def append_bronze(path: str, header: str | None, at: dt.datetime, files: list[Path]) -> None:
    """Append the files' bronze rows to the table at `path` in one delta-rs write, a file at a time, in
    batches of 64Ki rows: delta-rs takes a few batches ahead of its encoder, and whole files there
    held 0.5 GiB more at 10M rows."""
    rows = (b for f in files for b in bronze_rows(f, header, at).to_batches(1 << 16))
    write_deltalake(path, pa.RecordBatchReader.from_batches(BRONZE, rows), mode="append")


def ingest_bronze(cfg: Config, landing: Path) -> None:
    """Land every file of every configured source into its bronze table: emptied, then appended to.

    DuckDB's own readers do not give Spark's lines fast: read_text + string_split runs on one core (10M
    rows: not done in 5 minutes) and read_csv drops empty lines. So numpy splits the files, and as
    delta-rs encodes a stream on one thread, each core appends a share of the files as a stream of its
    own: memory holds about a file per stream, however many files there are."""
    for src in cfg.sources.values():
        header = src.header if src.format == "csv" and src.header else None
        files, path = sorted(landing.resolve().glob(f"*/{src.file_glob}")), cfg.table(src.bronze).path
        write_deltalake(path, BRONZE.empty_table(), mode="overwrite", schema_mode="overwrite")
        streams = max(1, min(len(files), os.cpu_count() or 1))
        append = functools.partial(append_bronze, path, header, dt.datetime.now(dt.timezone.utc))
        with concurrent.futures.ThreadPoolExecutor(streams) as pool:
            list(pool.map(append, [files[i::streams] for i in range(streams)]))


def check_failing(check: CheckConf) -> str:
    """A row-level check's failing rows as SQL (quality/rules.py `failing_rows`): null fails only not_null."""
    col = check.column
    if check.check == "not_null":
        return f"{col} IS NULL"
    if check.check == "between":
        bounds = []
        if check.min is not None:
            bounds.append(f"{col} < {check.min}")
        if check.max is not None:
            bounds.append(f"{col} > {check.max}")
        return f"({col} IS NOT NULL AND ({' OR '.join(bounds)}))"
    if check.check == "in_set":
        return f"({col} IS NOT NULL AND {col} NOT IN ({', '.join(map(_lit, check.values))}))"
    if check.check == "regex":
        return f"({col} IS NOT NULL AND NOT regexp_matches(CAST({col} AS VARCHAR), {_lit(check.pattern)}))"
    raise ValueError(f"{check.check} is not a row-level rule with a per-row predicate")


def first_broken(rules: list[tuple[str, str, str]]) -> tuple[str, str]:
    """(reason, detail) SQL naming the first of (name, condition, detail) a row breaks; NULL if none."""
    if not rules:
        return "NULL::VARCHAR", "NULL::VARCHAR"
    reason = " ".join(f"WHEN {cond} THEN {_lit(name)}" for name, cond, _ in rules)
    detail = " ".join(f"WHEN {cond} THEN {text}" for _, cond, text in rules)
    return f"CASE {reason} END", f"CASE {detail} END"


def gate_reason(checks: list[CheckConf]) -> tuple[str, str]:
    """The quality gate's quarantine reason: the first failing quarantine check, in conf order."""
    return first_broken([(c.name, check_failing(c),
                          f"{_lit(f'{c.check} on {c.column}: ')} || coalesce(CAST({c.column} AS VARCHAR), 'null')")
                         for c in checks if c.policy == "quarantine"])


def _measure_sql(check: CheckConf) -> str:
    """What one check counts: row-level checks over the rows the gate saw (`_valid`), dataset-level
    ones over the rows it kept (`reason IS NULL`), as GE and Soda see them."""
    col, kept = check.column, "reason IS NULL"
    if check.check == "unique":  # GE counts every row of a repeated value
        return f"count(*) FILTER (WHERE _valid AND _same_{col} > 1)"
    if check.check in ("not_null", "between", "in_set", "regex"):
        return f"count(*) FILTER (WHERE _valid AND {check_failing(check)})"
    if check.check == "missing_percent":
        return f"count(*) FILTER (WHERE {kept} AND {col} IS NULL)"
    if check.check == "invalid_percent":
        values = ", ".join(map(_lit, check.values))
        return f"count(*) FILTER (WHERE {kept} AND {col} IS NOT NULL AND {col} NOT IN ({values}))"
    if check.check == "duplicate_percent":
        return f"count({col}) FILTER (WHERE {kept}) - count(DISTINCT {col}) FILTER (WHERE {kept})"
    if check.check == "freshness":
        return f"epoch(max({col}) FILTER (WHERE {kept}))"
    return "NULL"  # row_count and schema need no more than the row counts and the columns


def _within(value: float, check: CheckConf) -> bool:
    return (check.min is None or value >= check.min) and (check.max is None or value <= check.max)


def _judge(check: CheckConf, value, seen: int, kept: int, now: dt.datetime, columns: list[str]) -> tuple:
    """(passed, observed, rows_checked, rows_failing) of one check, as quality/engines.py records it."""
    if check.engine == "great_expectations":
        return value == 0, f"{100 * value / seen if seen else 0.0:.4f}% unexpected", seen, value
    if check.check == "row_count":
        return _within(kept, check), str(kept), kept, None
    if check.check == "freshness":
        hours = None if value is None else (now.timestamp() - value) / 3600
        return hours is not None and _within(hours, check), f"{hours} hours", kept, None
    if check.check == "schema":
        missing = sorted(set(check.columns) - set(columns))
        return not missing, f"{len(missing)} schema differences", None, None
    percent = 100 * value / kept if kept else 0
    return _within(percent, check), f"{percent}%", kept, value


def measure(con: duckdb.DuckDBPyConnection, temp: str, table: str, checks: list[CheckConf],
            columns: list[str], run: dict) -> list[ResultRow]:
    """The gate's figures in one aggregate query: rows refused per structural reason, then every
    declared check; raises on a failing fail-policy check before anything is written, as the gate does."""
    unique = "".join(f", count({c.column}) OVER (PARTITION BY _valid, {c.column}) AS _same_{c.column}"
                     for c in checks if c.check == "unique")
    figures = {"seen": "count(*) FILTER (WHERE _valid)", "kept": "count(*) FILTER (WHERE reason IS NULL)",
               "newest_batch": "max(_batch_id) FILTER (WHERE reason IS NULL)" if "_batch_id" in columns else "NULL"}
    figures |= {f"refused {r}": f"count(*) FILTER (WHERE NOT _valid AND reason = {_lit(r)})" for r in STRUCTURAL}
    figures |= {c.name: _measure_sql(c) for c in checks}
    select = ", ".join(f'{sql} AS "{name}"' for name, sql in figures.items())
    got = dict(zip(figures, con.sql(f"SELECT {select} FROM (SELECT *{unique} FROM {temp})").fetchall()[0]))
    # Freshness is judged at the end of the newest arrival batch, as quality/gates.py `data_time` does.
    now = (dt.datetime.combine(dt.date.fromisoformat(got["newest_batch"][len("batch-"):]) + dt.timedelta(days=1),
                               dt.time(), dt.timezone.utc)
           if got["newest_batch"] else dt.datetime.now(dt.timezone.utc))
    rows = [ResultRow(run["run_id"], run["job"], table, None, run["batch"], "refine", r, "quarantine",
                      "quarantined", f"{got[f'refused {r}']} rows", None, got[f"refused {r}"], run["at"])
            for r in STRUCTURAL if got[f"refused {r}"]]
    failed = []
    for c in checks:
        passed, observed, checked, failing = _judge(c, got[c.name], got["seen"], got["kept"], now, columns)
        rows.append(ResultRow(run["run_id"], run["job"], table, None, run["batch"], c.engine, c.name, c.policy,
                              "passed" if passed else STATUS_FOR_POLICY[c.policy], observed, checked, failing,
                              run["at"]))
        if not passed and c.policy == "fail":
            failed.append(f"{c.name} ({observed})")
    if failed:
        raise QualityGateFailed(f"quality gate failed on {table}: {', '.join(failed)}; {table} was not written")
    return rows


def record(cfg: Config, rows: list[ResultRow]) -> None:
    """Append the stage's check results to the peer's gold.quality_results (a local path: delta-rs
    writes it, no Spark session is involved)."""
    append_rows(None, cfg.table(RESULTS_TABLE), rows, spark_schema(ResultRow))


def json_objects() -> str:
    """bronze with `_object`: raw is a JSON object. JSON functions run under a CASE on it, which
    spares them the rows that would raise (try() costs three times as much)."""
    return "(SELECT *, CASE WHEN json_valid(raw) THEN json_type(raw) = 'OBJECT' ELSE false END AS _object FROM bronze)"


def parse_sql(rules: EntityRules) -> str:
    """Bronze rows -> raw, meta, one string column per field (NULL when malformed) and `_malformed`."""
    if rules.format == "json":
        struct = _lit(json.dumps({f: "VARCHAR" for f in rules.fields}))
        rows = f"(SELECT *, CASE WHEN _object THEN from_json(raw, {struct}) END AS _p FROM {json_objects()})"
        malformed, values = "NOT _object", [f"_p.{f}" for f in rules.fields]
    else:
        rows = "(SELECT *, string_split(raw, ',') AS _p FROM bronze)"
        malformed = f"len(_p) <> {len(rules.fields)}"
        values = [f"nullif(_p[{i + 1}], '')" for i in range(len(rules.fields))]  # Spark's CSV: empty is null
    cols = ", ".join(f"CASE WHEN NOT _malformed THEN {v} END AS {f}" for f, v in zip(rules.fields, values))
    return f"""SELECT raw, {', '.join(META_COLUMNS)}, _malformed, {cols}
               FROM (SELECT *, {malformed} OR trim(coalesce(raw, '')) = '' AS _malformed FROM {rows})"""


def hmac_sha256(col: str, key: bytes) -> str:
    """HMAC-SHA256 as 64 hex characters, in SQL as lakehouse/pii.py writes it for Spark (null stays null)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    ipad, opad = (bytes(b ^ pad for b in key).hex() for pad in (0x36, 0x5C))
    return f"sha256(unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode({col}))))"


def structural_rules(rules: EntityRules, shape: dict[str, str], max_chars: int) -> list[tuple[str, str, str]]:
    """refine's rules in its order (lakehouse/refine.py `refine`), after oversized lines and the schema
    screen's files."""
    screened = [("oversized_record", f"length(raw) > {max_chars}",
                 f"length(raw) || {_lit(f' characters; a record holds at most {max_chars}')}")]
    if shape:
        details = " ".join(f"WHEN {_lit(f)} THEN {_lit(d)}" for f, d in shape.items())
        screened += [("schema_change", f"_source_file IN ({', '.join(map(_lit, shape))})",
                     f"CASE _source_file {details} END")]
    key_missing = " OR ".join(f"{k} IS NULL OR trim({k}) = ''" for k in rules.key)
    return [*screened,
            ("malformed_record", "_malformed", "'not a parsable record'"),
            ("null_key", f"({key_missing})", _lit(f"key {'/'.join(rules.key)} is null or empty")),
            *[("invalid_type", f"({f} IS NOT NULL AND _t_{f} IS NULL)", f"{_lit(f'{f} is not a {kind}: ')} || {f}")
              for f, kind in rules.types.items()],
            *[("missing_field", f"{f} IS NULL", _lit(f"{f} is missing")) for f in rules.required]]


def derived_columns(entity: str, cfg: Config) -> list[str]:
    """Columns silver adds after refine (lakehouse/refine.py `with_amount_eur`)."""
    if entity != "transactions":
        return []
    rate = " ".join(f"WHEN {_lit(cur)} THEN {float(r)!r}" for cur, r in cfg.currencies.items())
    return [f"{spark_round(f'amount / CASE currency {rate} END', 2)} AS amount_eur",
            "CAST(event_time AS DATE) AS event_date"]


def typed_sql(field: str, kind: str) -> str:
    """A field converted as lakehouse.refine.typed does: a double that is not finite does not convert."""
    cast = f"TRY_CAST({field} AS {SQL_TYPES[kind]})"
    return f"CASE WHEN isfinite({cast}) THEN {cast} END" if kind == "double" else cast


def refine_sql(entity: str, rules: EntityRules, cfg: Config, checks: list[CheckConf], shape: dict[str, str]) -> str:
    """Every bronze row typed and PII-hashed, with the first reason it is refused (NULL: kept) and
    `_valid` (it passed refine's structural rules, so the gate's row checks saw it)."""
    typed = {f: typed_sql(f, kind) for f, kind in rules.types.items()}
    reason, detail = first_broken(structural_rules(rules, shape, cfg.sources[entity].max_record_chars))
    keep = [f"_t_{f} AS {f}" if f in typed else f for f in rules.fields
            if f not in rules.dropped and f not in rules.hashed]
    hashed = [f"{hmac_sha256(f, pii_key(cfg))} AS {token}" for f, token in rules.hashed.items()]
    gate, gate_detail = gate_reason(checks)
    derived = "".join(f", {c}" for c in derived_columns(entity, cfg))
    return f"""
        WITH typed AS (SELECT *{''.join(f', {c} AS _t_{f}' for f, c in typed.items())} FROM ({parse_sql(rules)})),
        refined AS (SELECT {', '.join(keep + hashed)}, raw, {', '.join(META_COLUMNS)},
                           {reason} AS _refused, {detail} AS _refused_detail FROM typed)
        SELECT * EXCLUDE (_refused, _refused_detail), coalesce(_refused, {gate}) AS reason,
               CASE WHEN _refused IS NOT NULL THEN _refused_detail ELSE {gate_detail} END AS detail,
               _refused IS NULL AS _valid
        FROM (SELECT *{derived} FROM refined)"""


def shape_changes(con: duckdb.DuckDBPyConnection, rules: EntityRules) -> list[ShapeChange]:
    """Per source file, the fields most parsable rows add, lack or retype (quality/schema_changes.py),
    counted in one pass over bronze."""
    struct = json.dumps({f: "VARCHAR" for f in rules.types})
    retyped = ", ".join(f"CASE WHEN _p.{f} IS NOT NULL AND {typed_sql('_p.' + f, k)} IS NULL THEN 't:{f}' END"
                        for f, k in rules.types.items())
    counted = con.sql(f"""
        SELECT _source_file, tag, count(*) FROM (
          SELECT _source_file, unnest(['*'] || list_transform(_keys, lambda k: 'k:' || k)
                                      || list_filter([{retyped}], lambda t: t IS NOT NULL)) AS tag
          FROM (SELECT _source_file, json_keys(raw) AS _keys, from_json(raw, {_lit(struct)}) AS _p
                FROM {json_objects()} WHERE _object))
        GROUP BY ALL""").fetchall()
    tags: dict[str, dict[str, int]] = {}
    for source, tag, n in counted:
        tags.setdefault(source, {})[tag] = n
    changes = []
    for source, counts in sorted(tags.items()):
        total, seen = counts["*"], {t[2:]: n for t, n in counts.items() if t.startswith("k:")}
        change = ShapeChange(
            source_file=source,
            new_fields=sorted(k for k, n in seen.items() if k not in rules.fields and n > MAJORITY * total),
            missing_fields=sorted(f for f in rules.fields if seen.get(f, 0) <= MAJORITY * total),
            retyped_fields=sorted(t[2:] for t, n in counts.items() if t.startswith("t:") and n > MAJORITY * total))
        if change.new_fields or change.missing_fields or change.retyped_fields:
            changes.append(change)
    return changes


def screen_shapes(con: duckdb.DuckDBPyConnection, table: str, rules: EntityRules, policy: str,
                  run: dict) -> tuple[EntityRules, dict[str, str], ResultRow]:
    """The table's schema_policy applied to changed files (quality/gates.py `screen_schema`): the rules
    to refine with, the files to quarantine (file -> detail) and the screen's result."""
    changes = shape_changes(con, rules)
    status = {"evolve": "warned", "quarantine_batch": "quarantined", "fail": "failed"}[policy]
    observed = "; ".join(c.describe() for c in changes)
    result = ResultRow(run["run_id"], run["job"], table, None, run["batch"], "schema", "schema_change", policy,
                       status if changes else "passed", observed or "no shape change", None, None, run["at"])
    if changes and policy == "fail":
        raise QualityGateFailed(f"schema change in the source of {table}: {observed}; schema_policy is fail, "
                                f"{table} was not written")
    if policy == "evolve":
        new = tuple(sorted({f for c in changes for f in c.new_fields}))
        return dataclasses.replace(rules, fields=rules.fields + new), {}, result
    return rules, {c.source_file: c.describe() for c in changes}, result


def silver_sql(entity: str, columns: list[str]) -> str:
    """The refined rows silver keeps: one per key (first arrival or latest record), or each change."""
    if entity in HISTORY:
        return history_sql(*HISTORY[entity])
    key, order = KEEP[entity]
    return f"""SELECT {', '.join(columns)} FROM refined WHERE reason IS NULL
               QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1"""


def history_sql(key: str, ts: str) -> str:
    """Type-2 history (lakehouse/silver.py `scd2_history` on a new table): one row per change of
    SCD2_ATTRIBUTES, a record identical to the one before it adds none, valid_from/valid_to."""
    change = ", ".join(f"coalesce(CAST({a} AS VARCHAR), chr(0))" for a in SCD2_ATTRIBUTES)
    window = f"(PARTITION BY {key} ORDER BY valid_from)"
    return f"""
        WITH incoming AS (
          SELECT {key}, {', '.join(SCD2_ATTRIBUTES)}, _batch_id, _ingested_at, {ts} AS valid_from,
                 sha256(concat_ws('|', {change})) AS _change
          FROM refined WHERE reason IS NULL
          QUALIFY row_number() OVER (PARTITION BY {key}, {ts} ORDER BY _ingested_at) = 1),
        changes AS (SELECT * EXCLUDE (_change) FROM incoming QUALIFY lag(_change) OVER {window} IS DISTINCT FROM _change),
        windows AS (SELECT *, lead(valid_from) OVER {window} AS valid_to FROM changes)
        SELECT *, valid_to IS NULL AS is_current FROM windows"""


def quarantine_sql(temp: str, source_table: str, run_id: str, payload: list[str] | None = None) -> str:
    """Refused rows as quarantine.* holds them (lakehouse/quarantine.py); rows without a raw line
    (gold) keep their columns as JSON."""
    raw, meta = "raw", ", ".join(META_COLUMNS)
    if payload is not None:
        raw = f"to_json(struct_pack({', '.join(payload)}))"
        meta = "NULL::VARCHAR AS _source_file, NULL::VARCHAR AS _batch_id, NULL::TIMESTAMPTZ AS _ingested_at"
    return f"""SELECT {raw} AS raw, reason, detail, {meta}, uuid()::VARCHAR AS quarantine_id,
                      {_lit(source_table)} AS source_table, {_lit(run_id)} AS run_id, now() AS quarantined_at,
                      NULL::TIMESTAMPTZ AS replayed_at, NULL::VARCHAR AS replay_run_id
               FROM {temp} WHERE reason IS NOT NULL"""


def _columns(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    return con.sql(f"SELECT * FROM ({sql}) LIMIT 0").columns


def refine_entity(con: duckdb.DuckDBPyConnection, cfg: Config, entity: str, run: dict) -> list[ResultRow]:
    """Refine one entity's bronze rows into silver and quarantine; returns the gate's results."""
    rules, table, src = ENTITIES[entity], f"silver.{entity}", cfg.sources[entity]
    conf = cfg.quality.get(table)
    checks = conf.checks if conf else []
    scan(con, "bronze", cfg.table(src.bronze).path)
    results, shape = [], {}
    if rules.format == "json" and conf is not None:
        rules, shape, screened = screen_shapes(con, table, rules, conf.schema_policy, run)
        results.append(screened)
    con.execute(f"CREATE OR REPLACE TEMP TABLE refined AS {refine_sql(entity, rules, cfg, checks, shape)}")
    columns = [c for c in _columns(con, "SELECT * FROM refined") if c not in ("raw", "reason", "detail", "_valid")]
    results += measure(con, "refined", table, checks, _columns(con, silver_sql(entity, columns)), run)
    write(con, silver_sql(entity, columns), cfg.table(table).path)
    write(con, quarantine_sql("refined", src.bronze, run["run_id"]), cfg.table(f"quarantine.{entity}").path)
    return results


def refine_silver(con: duckdb.DuckDBPyConnection, cfg: Config, run_id: str) -> None:
    """Refine every configured entity, dimensions first, and record the gate's results."""
    run = {"run_id": run_id, "job": "refine_silver", "batch": "0", "at": dt.datetime.now(dt.timezone.utc)}
    results = []
    for entity in ENTITIES:
        if entity in cfg.sources:
            results += refine_entity(con, cfg, entity, run)
    record(cfg, results)


def gold_sql() -> dict[str, str]:
    """lakehouse/gold.py's three tables over the views `txns` and `labelled` (txns + is_fraud)."""
    total = spark_round("sum(amount_eur)", 2)
    # Daily spend's mean as gold.py takes it: whole cents summed, the mean of exactly half a cent up.
    cents, priced = "sum(CAST(round(amount_eur * 100) AS BIGINT))", "count(amount_eur)"
    return {
        "gold.customer_daily_spend": f"""
            SELECT customer_id, event_date, count(*) AS txn_count, {total} AS total_amount_eur,
                   ((2 * {cents} + {priced}) // (2 * {priced})) / 100.0 AS avg_amount_eur, max(amount_eur) AS max_amount_eur,
                   count(DISTINCT merchant_id) AS distinct_merchants
            FROM txns GROUP BY customer_id, event_date""",
        "gold.merchant_daily": f"""
            SELECT merchant_id, event_date, count(*) AS txn_count, {total} AS total_amount_eur,
                   count(DISTINCT customer_id) AS distinct_customers, count(is_fraud) AS labelled_count,
                   CAST(sum(CAST(is_fraud AS INTEGER)) AS BIGINT) AS fraud_count
            FROM labelled GROUP BY merchant_id, event_date""",
        "gold.fraud_kpis": f"""
            SELECT *, {spark_round('labelled_count / txn_count', 4)} AS label_coverage,
                   {spark_round('fraud_count / nullif(labelled_count, 0)', 6)} AS fraud_rate
            FROM (SELECT event_date, count(*) AS txn_count, {total} AS total_amount_eur,
                         count(is_fraud) AS labelled_count,
                         CAST(coalesce(sum(CAST(is_fraud AS INTEGER)), 0) AS BIGINT) AS fraud_count,
                         {spark_round('coalesce(sum(CASE WHEN is_fraud THEN amount_eur END), 0.0)', 2)} AS fraud_amount_eur
                  FROM labelled GROUP BY event_date)""",
    }


def build_gold(con: duckdb.DuckDBPyConnection, cfg: Config, run_id: str) -> None:
    """Rebuild the gold tables from the peer's silver; every gate runs before any table is written."""
    run = {"run_id": run_id, "job": "build_gold", "batch": "full", "at": dt.datetime.now(dt.timezone.utc)}
    scan(con, "txns", cfg.table("silver.transactions").path)
    scan(con, "labels", cfg.table("silver.labels").path)
    con.execute("CREATE OR REPLACE TEMP VIEW labelled AS "
                "SELECT t.*, l.is_fraud FROM txns t LEFT JOIN (SELECT txn_id, is_fraud FROM labels) l USING (txn_id)")
    results, payloads = [], {}
    for name, sql in gold_sql().items():
        checks = cfg.quality[name].checks if name in cfg.quality else []
        reason, detail = gate_reason(checks)
        temp = name.replace(".", "_")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS "
                    f"SELECT *, {reason} AS reason, {detail} AS detail, true AS _valid FROM ({sql})")
        payloads[name] = _columns(con, sql)
        results += measure(con, temp, name, checks, payloads[name], run)
    for name, payload in payloads.items():
        temp = name.replace(".", "_")
        write(con, f"SELECT {', '.join(payload)} FROM {temp} WHERE reason IS NULL", cfg.table(name).path)
        write(con, quarantine_sql(temp, name, run_id, payload), cfg.table(f"quarantine.{name.split('.', 1)[1]}").path)
    record(cfg, results)


def run_stages(landing: Path, root: Path) -> dict[str, float]:
    """Run bronze, silver and gold into `root`; each stage's wall-clock seconds."""
    cfg, con, run_id = load_config("local", root=root), connect(), f"duckdb-{uuid.uuid4().hex[:12]}"
    stages = {"bronze": lambda: ingest_bronze(cfg, landing),
              "silver": lambda: refine_silver(con, cfg, run_id),
              "gold": lambda: build_gold(con, cfg, run_id)}
    seconds = {}
    for name, stage in stages.items():
        started = time.perf_counter()
        stage()
        seconds[name] = time.perf_counter() - started
    return seconds


@dataclasses.dataclass
class Verdict:
    """What the two roots agree on, and every difference found."""

    silver_rows: dict[str, int]
    quarantine: dict[str, dict[str, int]]
    checks: int
    gold_rows: dict[str, int]
    differences: list[str]
    batch_scoped: list[str] = dataclasses.field(default_factory=list)  # checks held to rows checked only

    @property
    def identical(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        if self.differences:
            return f"{len(self.differences)} difference(s): " + "; ".join(self.differences)
        quarantined = "; ".join(f"{t.split('.', 1)[1]}: " + ", ".join(f"{r} {n}" for r, n in sorted(by.items()))
                                for t, by in self.quarantine.items())
        scoped = (f"; per micro-batch, so compared by rows checked only: {', '.join(self.batch_scoped)}"
                  if self.batch_scoped else "")
        return (f"identical silver rows {sum(self.silver_rows.values()):,} "
                f"({', '.join(f'{e} {n:,}' for e, n in self.silver_rows.items())}), quarantine per reason "
                f"({quarantined or 'none'}), HMAC tokens, {self.checks} check results, gold "
                f"{sum(self.gold_rows.values()):,} rows{scoped}")


def _dataset(cfg: Config, name: str) -> pyarrow.dataset.Dataset | None:
    """The Delta table as an Arrow dataset DuckDB scans in batches: at 10M rows, tables loaded whole on
    both sides (and EXCEPT ALL over them) took the verification past this machine's memory."""
    path = cfg.table(name).path
    return DeltaTable(path).to_pyarrow_dataset() if delta_exists(path) else None


def _pair(con: duckdb.DuckDBPyConnection, spark_cfg: Config, peer_cfg: Config, name: str,
          differences: list[str]) -> list[str] | None:
    """Register both roots' table as views s and p (one not written as empty); their common columns
    (other column differences noted), None where neither root has written it."""
    spark, peer = _dataset(spark_cfg, name), _dataset(peer_cfg, name)
    if spark is None and peer is None:
        return None
    spark = spark if spark is not None else peer.schema.empty_table()
    peer = peer if peer is not None else spark.schema.empty_table()
    con.register("s", spark)
    con.register("p", peer)
    for f in spark.schema:
        if f.name not in peer.schema.names:
            differences.append(f"{name}: column {f.name} only in Spark")
        elif not f.type.equals(peer.schema.field(f.name).type):
            differences.append(f"{name}: {f.name} is {f.type} in Spark, {peer.schema.field(f.name).type} in the peer")
    differences += [f"{name}: column {c} only in the peer" for c in peer.schema.names if c not in spark.schema.names]
    return [c for c in spark.schema.names if c in peer.schema.names]


def _fingerprint(con: duckdb.DuckDBPyConnection, view: str, cols: str) -> tuple[int, int]:
    """(rows, sum of each row's 64-bit hash): equal for two multisets of rows, whatever their order,
    and computed in one streaming pass."""
    return con.sql(f"SELECT count(*), coalesce(sum(hash({cols})), 0) FROM {view}").fetchall()[0]


def _row_differences(con: duckdb.DuckDBPyConnection, name: str, columns: list[str]) -> list[str]:
    """Rows of s and p that the other lacks (as multisets), with an example of each side. The sides'
    fingerprints are compared first; rows are matched one by one only where they differ."""
    cols = ", ".join(f'"{c}"' for c in columns)
    if _fingerprint(con, "s", cols) == _fingerprint(con, "p", cols):
        return []
    out = []
    for side, this, other in (("Spark", "s", "p"), ("the peer", "p", "s")):
        extra = con.sql(f"SELECT {cols} FROM {this} EXCEPT ALL SELECT {cols} FROM {other}").fetchall()
        if extra:
            out.append(f"{name}: {len(extra)} row(s) only in {side}, e.g. {dict(zip(columns, extra[0]))}")
    return out or [f"{name}: the row fingerprints differ, but no row is only on one side"]


def _verify_silver(con: duckdb.DuckDBPyConnection, spark_cfg: Config, peer_cfg: Config,
                   differences: list[str]) -> dict[str, int]:
    """Silver rows per entity, every column but where and when a row was read; rows per entity."""
    rows = {}
    for entity in ENTITIES:
        name = f"silver.{entity}"
        if (columns := _pair(con, spark_cfg, peer_cfg, name, differences)) is not None:
            differences += _row_differences(con, name, [c for c in columns if c not in READ_COLUMNS])
            rows[entity] = con.sql("SELECT count(*) FROM s").fetchall()[0][0]
    return rows


def _verify_quarantine(con: duckdb.DuckDBPyConnection, spark_cfg: Config, peer_cfg: Config,
                       differences: list[str]) -> dict[str, dict]:
    """Quarantined rows per table and reason; Spark's counts of the tables that hold any."""
    counts = {}
    for name in (f"quarantine.{t}" for t in spark_cfg.tables["quarantine"]):
        if _pair(con, spark_cfg, peer_cfg, name, differences) is None:
            continue
        spark, peer = (dict(con.sql(f"SELECT reason, count(*) FROM {v} GROUP BY reason").fetchall()) for v in "sp")
        if spark != peer:
            differences.append(f"{name}: rows per reason differ, Spark {spark}, the peer {peer}")
        if spark:
            counts[name] = spark
    return counts


# Checks whose failing rows depend on how the rows were batched: a duplicate spread over two of silver's
# micro-batches is in neither batch's count (the MERGE drops it all the same).
BATCH_SCOPED = ("unique", "duplicate_percent")


def _verify_checks(con: duckdb.DuckDBPyConnection, spark_cfg: Config, peer_cfg: Config,
                   differences: list[str]) -> tuple[int, list[str]]:
    """(statuses, rows checked, rows failing) of every check in the latest run of each job the peer
    does (refine_silver, build_gold), summed over the run's micro-batches (silver takes 10M transactions
    in 4, the peer in one). Other jobs' results (`tidewater validate`) check the same tables and are
    left out. A batch-scoped check that Spark ran on more than one batch is held to its rows checked
    only. (How many checks, those ones.)"""
    _pair(con, spark_cfg, peer_cfg, RESULTS_TABLE, differences)
    latest = ('SELECT "table", "check", list_sort(list_distinct(list(status))), sum(rows_checked), '
              "sum(rows_failing), count(DISTINCT batch) FROM {0} "
              "WHERE run_id IN (SELECT arg_max(run_id, checked_at) FROM {0} "
              "WHERE job IN ('refine_silver', 'build_gold') GROUP BY job) GROUP BY ALL")
    spark, peer = ({(t, c): rest for t, c, *rest in con.sql(latest.format(v)).fetchall()} for v in "sp")
    kinds = {(t, c.name): c.check for t, q in spark_cfg.quality.items() for c in q.checks}
    scoped = []
    for check in sorted(set(spark) | set(peer)):
        ours, theirs = spark.get(check), peer.get(check)
        if ours and theirs and kinds.get(check) in BATCH_SCOPED and ours[3] > 1:
            scoped.append(f"{'.'.join(check)} ({ours[3]} batches)")
            ours, theirs = ours[1], theirs[1]
        elif ours and theirs:
            ours, theirs = ours[:3], theirs[:3]
        if ours != theirs:
            differences.append(f"check {'.'.join(check)}: (status, rows checked, failing) Spark "
                               f"{ours}, the peer {theirs}")
    return len(spark), scoped


def _verify_gold(con: duckdb.DuckDBPyConnection, spark_cfg: Config, peer_cfg: Config,
                 differences: list[str]) -> dict[str, int]:
    """Gold rows, exactly: rows per table."""
    rows = {}
    for name in GOLD_KEYS:
        if (columns := _pair(con, spark_cfg, peer_cfg, name, differences)) is None:
            continue
        differences += _row_differences(con, name, columns)
        rows[name] = con.sql("SELECT count(*) FROM s").fetchall()[0][0]
    return rows


def verify(spark_root: Path, peer_root: Path) -> Verdict:
    """Hold the peer's tables against Spark's: silver rows, quarantine rows per reason, the latest
    check results per job, and gold."""
    spark_cfg, peer_cfg = load_config("local", root=spark_root), load_config("local", root=peer_root)
    con, differences = connect(), []
    silver = _verify_silver(con, spark_cfg, peer_cfg, differences)
    quarantine = _verify_quarantine(con, spark_cfg, peer_cfg, differences)
    checks, scoped = _verify_checks(con, spark_cfg, peer_cfg, differences)
    gold = _verify_gold(con, spark_cfg, peer_cfg, differences)
    return Verdict(silver, quarantine, checks, gold, differences, scoped)


def peak_rss_mib() -> float:
    """This process's resident high-water mark. VmHWM, not ru_maxrss: a process started by another
    inherits the ru_maxrss of the one it was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", required=True, help="the landing folder Tidewater ingested")
    parser.add_argument("--root", required=True, help="the peer's storage root (its tables go under it)")
    parser.add_argument("--verify", metavar="SPARK_ROOT", help="compare the peer's tables with this Tidewater root")
    parser.add_argument("--json", metavar="FILE", help="write seconds, peak memory and the verdict here")
    args = parser.parse_args()
    seconds = run_stages(Path(args.landing), Path(args.root))
    peak = peak_rss_mib()  # before verification adds its own
    for name, s in seconds.items():
        print(f"{name:<8}{s:>8.2f} s")
    print(f"peak memory {peak:,.0f} MiB")
    verdict = verify(Path(args.verify), Path(args.root)) if args.verify else None
    if verdict is not None:
        print(f"verification: {verdict.summary()}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seconds": seconds, "peak_memory_mib": peak,
            "versions": {"duckdb": duckdb.__version__, "deltalake": deltalake.__version__},
            "verification": None if verdict is None else {
                "identical": verdict.identical, "summary": verdict.summary(), "differences": verdict.differences},
        }, indent=2))
    if verdict is not None and not verdict.identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
