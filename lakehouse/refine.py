"""Silver's pure transforms: parse raw bronze lines, type them, and split usable rows from rejects.

Each entity's structural rules (parsable, keyed, typed, complete) are declared once as data
(`EntityRules`); `refine` applies them. Business rules (ranges, code sets) are declared checks in
conf `quality:`, applied by the quality gate after this step. A rejected row keeps its raw payload
and gets one machine-readable `reason` (the first rule it breaks) and a human `detail`, so it can
be fixed and replayed. Usable rows keep `raw` too: a gate after this step may still refuse them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.jvm_functions import JSON_SHAPE, JSON_SHAPE_EXTRA_BIT


META_COLUMNS = ("_source_file", "_batch_id", "_ingested_at")
QUARANTINE_COLUMNS = ("raw", "reason", "detail") + META_COLUMNS
OVERSIZED = "oversized_record"
# What `classify(shape=True)` notes of each JSON line for the schema screen (quality.schema_changes):
# bit i set when the line has rules.fields[i] (null: not a JSON object), whether it has a key that
# is not a field, bit j set when the value of the j-th typed field does not convert.
SHAPE_COLUMNS = ("_fields_present", "_extra_fields", "_retyped")


@dataclass(frozen=True)
class EntityRules:
    name: str
    format: str  # json | csv
    fields: tuple[str, ...]
    key: tuple[str, ...]
    types: dict[str, str] = field(default_factory=dict)  # field -> double | timestamp | boolean
    required: tuple[str, ...] = ()
    hashed: dict[str, str] = field(default_factory=dict)  # clear field -> token column
    dropped: tuple[str, ...] = ()
    # Silver columns Delta keeps min/max statistics for: the ones reads filter on (keys, times).
    # Statistics of the others (tokens, names) cost write time and skip no file. Empty: Delta's default.
    indexed: tuple[str, ...] = ()


def typed(col: Column, kind: str) -> Column:
    """A string field as `kind`, or null where it does not convert. Spark casts "Infinity" and "NaN"
    to doubles; no amount or rate is either, so a double that is not finite does not convert."""
    if kind == "timestamp":
        return F.try_to_timestamp(col)
    value = col.try_cast(kind)
    if kind == "double":
        return F.when(F.isnan(value) | (F.abs(value) == F.lit(float("inf"))), F.lit(None).cast("double")).otherwise(value)
    return value


def _short_enough(max_chars: int) -> Column:
    """A bronze line no parser should refuse to read (a missing line counts as empty).

    A line of at most `max_chars` bytes holds at most as many characters: its byte count is known,
    its characters are counted by reading every byte (a fifth of a parse's time), so only longer
    lines are counted."""
    raw = F.col("raw")
    return F.coalesce(F.octet_length(raw) <= max_chars, F.lit(True)) | (F.length(raw) <= max_chars)


def within_limit(bronze: DataFrame, max_chars: int) -> DataFrame:
    """Bronze lines short enough to parse."""
    return bronze.where(_short_enough(max_chars))


def csv_field_count(raw: Column) -> Column:
    """Fields in a CSV line, commas inside quotes not counted ("a, b" is one field)."""
    return F.size(F.split(F.regexp_replace(raw, '"[^"]*"', ""), ","))


def parse_lines(bronze: DataFrame, rules: EntityRules, text: str = "raw") -> DataFrame:
    """Raw lines -> one string column per field, `_malformed`, and for CSV `_header_line` (the line is a
    header) and `_header` (its file's header, where the file's header is not the configured one).
    `text` names the column parsed (raw, or raw where it is short enough to parse)."""
    raw = F.col(text)
    if rules.format == "csv":
        return _parse_csv(bronze, rules, text)
    schema = T.StructType([T.StructField(f, T.StringType()) for f in rules.fields]).add("_corrupt", T.StringType())
    # A column of its own, so each line is parsed once however many fields read it.
    bronze = bronze.withColumn("_parsed", F.from_json(raw, schema, {"mode": "PERMISSIVE",
                                                                    "columnNameOfCorruptRecord": "_corrupt"}))
    parsed = F.col("_parsed")
    malformed = parsed["_corrupt"].isNotNull() | parsed.isNull() | (F.trim(F.coalesce(raw, F.lit(""))) == "")
    cols = [F.when(malformed, None).otherwise(parsed[f]).alias(f) for f in rules.fields]
    return bronze.select("raw", *META_COLUMNS, *cols, malformed.alias("_malformed"),
                         F.lit(False).alias("_header_line"), F.lit(None).cast("string").alias("_header"),
                         *([text] if text != "raw" else []))


def _parse_csv(bronze: DataFrame, rules: EntityRules, text: str) -> DataFrame:
    """CSV lines are read by position, or by name where their file has a header of its own.

    Ingest drops the configured header line; a file whose header differs (columns reordered, one
    missing or extra) brings its header into bronze. Such a line names the key column, which no
    data line holds, so it is found per file and decides how the file's lines are read.
    """
    n, raw = len(rules.fields), F.col(text)
    names = F.split(raw, ",")
    header_line = F.coalesce(F.array_contains(names, rules.key[0]), F.lit(False))
    headers = bronze.where(header_line).groupBy("_source_file").agg(F.min(text).alias("_header"))
    df = bronze.join(F.broadcast(headers), "_source_file", "left")
    header = F.split(F.col("_header"), ",")
    by_name = F.array_sort(header) == F.array_sort(F.array(*[F.lit(f) for f in rules.fields]))
    positional = ", ".join(f"_c{i} string" for i in range(n))
    parsed = F.from_csv(raw, positional, {"mode": "PERMISSIVE"})
    values = F.array(*[parsed[f"_c{i}"] for i in range(n)])
    malformed = F.coalesce(csv_field_count(raw) != n, F.lit(True)) | (F.trim(F.coalesce(raw, F.lit(""))) == "")
    unreadable = malformed | header_line | (F.col("_header").isNotNull() & ~by_name)
    cols = [F.when(unreadable, None)
            .when(F.col("_header").isNull(), values[i])
            .otherwise(F.try_element_at(values, F.array_position(header, f).cast("int"))).alias(f)
            for i, f in enumerate(rules.fields)]
    return df.select("raw", *META_COLUMNS, *cols, malformed.alias("_malformed"),
                     header_line.alias("_header_line"),
                     F.when(~by_name, F.col("_header")).alias("_header"))


def classify(bronze: DataFrame, rules: EntityRules, hash_pii: Callable[[Column], Column],
             max_chars: int | None = None, shape: bool = False) -> DataFrame:
    """Every bronze row with the columns silver keeps (typed, PII as tokens), its raw payload and
    origin, and a `reason` and `detail` (null for a usable row): one parse serves silver and quarantine.

    `hash_pii` turns a clear column into its token column (lakehouse.pii.pii_token in the jobs).
    A line longer than `max_chars` is refused as oversized_record before any parser sees it.
    `shape` adds SHAPE_COLUMNS (JSON sources), so the schema screen needs no parse of its own.
    """
    text = "raw"
    if max_chars is not None:
        text = "_parsed_text"
        bronze = bronze.withColumn(text, F.when(_short_enough(max_chars), F.col("raw")))
    df = parse_lines(bronze, rules, text)
    converted = {f: typed(F.col(f), kind) for f, kind in rules.types.items()}
    noting = shape and rules.format == "json"
    shape_of = [F.call_function(JSON_SHAPE, F.col(text), F.lit(",".join(rules.fields))).alias("_shape")] if noting else []
    df = df.select("*", *[c.alias(f"_t_{f}") for f, c in converted.items()], *shape_of)
    t = {f: F.col(f"_t_{f}") if f in converted else F.col(f) for f in rules.fields}

    key_missing = F.lit(False)
    for k in rules.key:
        key_missing = key_missing | F.col(k).isNull() | (F.trim(F.col(k)) == "")
    expected = ",".join(rules.fields)
    checks: list[tuple[str, Column, Column]] = []
    if max_chars is not None:
        checks.append((OVERSIZED, ~_short_enough(max_chars),
                       F.format_string(f"%d characters; a record holds at most {max_chars}", F.length("raw"))))
    checks += [
        ("csv_header", F.col("_header_line"),
         F.lit("the file's own header line: the file's lines were read by its column names")),
        ("csv_header_mismatch", F.col("_header").isNotNull(),
         F.concat(F.lit("the file's header is "), F.col("_header"), F.lit(f"; expected these columns: {expected}"))),
        ("malformed_record", F.col("_malformed"), F.lit("not a parsable record")),
        ("null_key", key_missing, F.lit(f"key {'/'.join(rules.key)} is null or empty")),
    ]
    for f in rules.types:
        bad = F.col(f).isNotNull() & F.col(f"_t_{f}").isNull()
        checks.append(("invalid_type", bad, F.concat(F.lit(f"{f} is not a {rules.types[f]}: "), F.col(f))))
    for f in rules.required:
        checks.append(("missing_field", F.col(f).isNull(), F.lit(f"{f} is missing")))

    reason, detail = F.lit(None).cast("string"), F.lit(None).cast("string")
    for name, cond, text_of in reversed(checks):
        reason = F.when(cond, F.lit(name)).otherwise(reason)
        detail = F.when(cond, text_of).otherwise(detail)
    keep = [c for c in rules.fields if c not in rules.dropped and c not in rules.hashed]
    noted = _shape_notes(rules) if noting else []
    return df.select(*[t[c].alias(c) for c in keep],
                     *[hash_pii(F.col(c)).alias(token) for c, token in rules.hashed.items()],
                     "raw", *META_COLUMNS, reason.alias("reason"), detail.alias("detail"), *noted)


def _shape_notes(rules: EntityRules) -> list[Column]:
    """SHAPE_COLUMNS of a parsed JSON line, from its shape (`_shape`: lakehouse.jvm_functions.JSON_SHAPE)
    and `classify`'s typed columns."""
    if len(rules.fields) > JSON_SHAPE_EXTRA_BIT:
        raise ValueError(f"{rules.name} has {len(rules.fields)} fields; the schema screen notes at most "
                         f"{JSON_SHAPE_EXTRA_BIT}")
    shape = F.col("_shape")
    retyped = sum(((F.col(f).isNotNull() & F.col(f"_t_{f}").isNull()).cast("long") * (1 << j)
                   for j, f in enumerate(rules.types)), F.lit(0).cast("long"))
    return [shape.bitwiseAND((1 << len(rules.fields)) - 1).alias(SHAPE_COLUMNS[0]),
            (shape.bitwiseAND(1 << JSON_SHAPE_EXTRA_BIT) != 0).alias(SHAPE_COLUMNS[1]),
            F.when(shape.isNotNull(), retyped).alias(SHAPE_COLUMNS[2])]


def usable(classified: DataFrame) -> DataFrame:
    """The classified rows silver takes (no reason), with raw (silver drops it when it writes them)."""
    return classified.where(F.col("reason").isNull()).drop("reason", "detail", *SHAPE_COLUMNS)


def refused(classified: DataFrame) -> DataFrame:
    """The classified rows quarantine takes, as quarantine holds them."""
    return classified.where(F.col("reason").isNotNull()).select(*QUARANTINE_COLUMNS)


def refine(bronze: DataFrame, rules: EntityRules, hash_pii: Callable[[Column], Column]) -> tuple[DataFrame, DataFrame]:
    """Split bronze rows into (typed, PII-safe silver rows, quarantine rows with a reason)."""
    classified = classify(bronze, rules, hash_pii)
    return usable(classified), refused(classified)


def with_amount_eur(txns: DataFrame, rates: dict[str, float]) -> DataFrame:
    """Add amount_eur (via the configured reference rates) and event_date."""
    rate = F.create_map(*[x for cur, r in rates.items() for x in (F.lit(cur), F.lit(float(r)))])
    return (txns.withColumn("amount_eur", F.round(F.col("amount") / F.try_element_at(rate, F.col("currency")), 2))
            .withColumn("event_date", F.to_date("event_time")))


SILVER_LABELS_SCHEMA = "txn_id string, is_fraud boolean, label_time timestamp"

TRANSACTION_RULES = EntityRules(
    name="transactions", format="json",
    fields=("txn_id", "card_id", "customer_id", "merchant_id", "merchant_category", "amount",
            "currency", "country", "channel", "device_id", "event_time", "card_number",
            "customer_name", "email", "ip_address"),
    key=("txn_id",),
    types={"amount": "double", "event_time": "timestamp"},
    required=("customer_id", "merchant_id", "amount", "currency", "event_time"),
    hashed={"card_number": "card_hash", "email": "email_hash", "ip_address": "ip_hash"},
    dropped=("customer_name",),
    indexed=("txn_id", "customer_id", "merchant_id", "event_time", "event_date", "_ingested_at"),
)


CUSTOMER_RULES = EntityRules(
    name="customers", format="csv",
    fields=("customer_id", "customer_name", "email", "card_number", "segment", "city", "country",
            "updated_at"),
    key=("customer_id",),
    types={"updated_at": "timestamp"},
    required=("updated_at",),
    hashed={"email": "email_hash", "card_number": "card_hash"},
    dropped=("customer_name",),
)

MERCHANT_RULES = EntityRules(
    name="merchants", format="csv",
    fields=("merchant_id", "merchant_name", "category", "country", "updated_at"),
    key=("merchant_id",),
    types={"updated_at": "timestamp"},
    required=("updated_at",),
)

LABEL_RULES = EntityRules(
    name="labels", format="json",
    fields=("txn_id", "is_fraud", "label_time"),
    key=("txn_id",),
    types={"is_fraud": "boolean", "label_time": "timestamp"},
    required=("is_fraud", "label_time"),
    indexed=("txn_id", "label_time", "_ingested_at"),
)
