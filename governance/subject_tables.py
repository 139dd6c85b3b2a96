"""Which configured tables hold a data subject's rows, read from the tables' own schemas.

A table holds them by the subject's key column (customer_id), by a linked key column (a label names
its transaction, not its customer), or in a raw payload line (bronze, quarantine) that names either
key. A table without any of these (an aggregate over every customer) holds none. No list of tables
is kept here: a new table with one of these columns is covered the day it is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config, TableRef
from lakehouse.grants import RAW_PAYLOAD
from lakehouse.tables import current_version, read_table

# A raw line is split into tokens on anything an id does not contain, so `"C0000028",` names C0000028
# and C00000280 does not.
TOKEN_SEPARATORS = r"[^A-Za-z0-9_-]+"
SUBJECT, LINKED, TOKENS = "_subject", "_linked_", "_tokens"  # keys_frame's columns


@dataclass(frozen=True)
class SubjectTable:
    """A configured table that can hold a subject's rows, and the columns that say which."""

    ref: TableRef
    version: int
    subject_column: str | None  # the subject's key, where the table has it
    linked_columns: tuple[str, ...]  # linked keys the table has
    raw: bool  # whether it keeps raw payload lines


@dataclass(frozen=True)
class SubjectKeys:
    """The subject's id and the values of the linked keys found on its rows."""

    subject: str
    linked: dict[str, frozenset[str]]

    def tokens(self) -> list[str]:
        return sorted({self.subject, *(v for values in self.linked.values() for v in values)})


def _columns(spark: SparkSession, ref: TableRef) -> list[str]:
    """A table's column names: from its log with delta-rs where it is local (no Spark job), else Spark."""
    if "://" in ref.path:
        return read_table(spark, ref).columns
    from deltalake import DeltaTable

    return [f.name for f in DeltaTable(ref.path).schema().fields]


def subject_tables(spark: SparkSession, cfg: Config) -> list[SubjectTable]:
    """Every written configured table whose schema can hold a subject's rows (erasures_table excluded)."""
    gov = cfg.governance
    out = []
    for name in cfg.table_names():
        ref = cfg.table(name)
        version = current_version(spark, ref)
        if version is None or name == gov.erasures_table:
            continue
        columns = set(_columns(spark, ref))
        table = SubjectTable(ref, version, gov.subject_key if gov.subject_key in columns else None,
                             tuple(k for k in gov.linked_keys if k in columns), RAW_PAYLOAD in columns)
        if table.subject_column or table.linked_columns or table.raw:
            out.append(table)
    return out


def names_any(raw: Column, tokens: list[str]) -> Column:
    """Whether a raw line contains any of these ids as a whole token."""
    return F.arrays_overlap(F.split(raw, TOKEN_SEPARATORS), F.array(*(F.lit(t) for t in tokens)))


def keys_frame(spark: SparkSession, keys: SubjectKeys) -> DataFrame:
    """The subject's keys as one row (`s`): the id, each linked key's values, and every token.

    Rows are matched against it by a join, never by a condition with the ids written in: Delta
    records a DELETE's condition in the table's log, where the id would outlive the erasure.
    """
    linked = {f"{LINKED}{k}": sorted(v) for k, v in keys.linked.items()}
    schema = ", ".join([f"{SUBJECT} string", *(f"{c} array<string>" for c in linked), f"{TOKENS} array<string>"])
    return spark.createDataFrame([(keys.subject, *linked.values(), keys.tokens())], schema)


def subject_rows(table: SubjectTable) -> Column:
    """The condition that matches a table's row (`t`) to the subject's keys (`s`, keys_frame)."""
    conditions = []
    if table.subject_column:
        conditions.append(F.col(f"t.{table.subject_column}") == F.col(f"s.{SUBJECT}"))
    for column in table.linked_columns:
        conditions.append(F.array_contains(F.col(f"s.{LINKED}{column}"), F.col(f"t.{column}")))
    if table.raw:
        conditions.append(F.arrays_overlap(F.split(F.col(f"t.{RAW_PAYLOAD}"), TOKEN_SEPARATORS), F.col(f"s.{TOKENS}")))
    out = conditions[0]
    for condition in conditions[1:]:
        out = out | condition
    return F.coalesce(out, F.lit(False))


def find_keys(spark: SparkSession, cfg: Config, tables: list[SubjectTable], subject: str) -> SubjectKeys:
    """The subject's linked keys: from its rows' columns, and from the JSON raw lines that name it."""
    linked: dict[str, set[str]] = {k: set() for k in cfg.governance.linked_keys}
    for table in tables:
        df: DataFrame = read_table(spark, table.ref, table.version)
        if table.subject_column and table.linked_columns:
            rows = df.where(F.col(table.subject_column) == subject).select(*table.linked_columns).distinct()
        elif table.raw:
            raw = F.col(RAW_PAYLOAD)
            rows = (df.where(F.coalesce(names_any(raw, [subject]), F.lit(False)))
                    .select(*(F.get_json_object(raw, f"$.{k}").alias(k) for k in linked)).distinct())
        else:
            continue
        for row in rows.collect():
            for key, value in row.asDict().items():
                if value is not None:
                    linked[key].add(str(value))
    return SubjectKeys(subject, {k: frozenset(v) for k, v in linked.items()})
