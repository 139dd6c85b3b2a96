"""Clear PII in the lakehouse: card numbers, emails, IP addresses and person names, per table and column.

Cards, emails and IPs are found by Presidio's pattern recognizers (a card must pass the Luhn check, an
email must end in a known top-level domain, an IP must parse), which need no language model. Presidio
finds person names only with a spaCy NER model, and none is served offline here (PyPI carries only
unofficial re-uploads), so names are found by field: a column, JSON key or CSV header field named in
governance.name_fields. Each table is read without a JVM (delta-rs), the first scan_rows rows of
every string column. The report says where (row of the sample, characters), never the value.
"""

from __future__ import annotations

import bisect
import csv
import json
from dataclasses import dataclass
from functools import cache

from lakehouse.config import Config
from lakehouse.grants import RAW_PAYLOAD

NAME_KIND = "person_name"
NAME_METHOD = "by field name (governance.name_fields): no offline name recognizer"


@dataclass(frozen=True)
class Finding:
    table: str
    column: str
    kind: str  # credit_card, email, ip_address, person_name
    count: int  # values found in the rows scanned
    rows_scanned: int
    first_at: str  # where the first one is: row N of the sample, characters A-B (or field F)


@cache
def recognizers() -> dict:
    """kind -> Presidio pattern recognizer (no NLP engine is loaded for these)."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer, IpRecognizer

    # tldextract fetches the public suffix list at first use; its bundled copy answers offline.
    offline_suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text).fqdn != ""

    return {"credit_card": CreditCardRecognizer(), "email": OfflineEmailRecognizer(), "ip_address": IpRecognizer()}


def _position(starts: list[int], start: int, end: int) -> str:
    row = bisect.bisect_right(starts, start) - 1
    return f"row {row}, chars {start - starts[row]}-{end - starts[row]}"


def _in_decimal(text: str, start: int, end: int) -> bool:
    """Whether a digit run is part of a decimal number (a float's 16 digits can pass the Luhn check)."""
    return text[start - 1:start] == "." or (text[end:end + 1] == "." and text[end + 1:end + 2].isdigit())


def scan_values(values: list[str]) -> dict[str, tuple[int, str]]:
    """kind -> (matches, where the first is) over these values (one text, one pass per recognizer)."""
    starts, parts, at = [], [], 0
    for value in values:
        starts.append(at)
        parts.append(value)
        at += len(value) + 1
    text = "\n".join(parts)
    out = {}
    for kind, recognizer in recognizers().items():
        found = sorted((r for r in recognizer.analyze(text, recognizer.supported_entities, None)
                        if kind != "credit_card" or not _in_decimal(text, r.start, r.end)), key=lambda r: r.start)
        if found:
            out[kind] = (len(found), _position(starts, found[0].start, found[0].end))
    return out


def _named_fields(line: str, header: list[str] | None, names: set[str]) -> list[str]:
    """The name fields a raw line fills: JSON keys, or CSV fields by the source's header."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:  # a truncated line: its keys are still visible
            return [n for n in names if f'"{n}": "' in line or f'"{n}":"' in line]
        return [k for k, v in record.items() if k in names and v] if isinstance(record, dict) else []
    if header:
        fields = next(csv.reader([line]), [])
        return [h for h, v in zip(header, fields) if h in names and v]
    return []


def scan_names(table: str, column: str, values: list[str], header: list[str] | None,
               names: set[str]) -> Finding | None:
    if column in names:
        hits = [i for i, v in enumerate(values) if v]
    elif column == RAW_PAYLOAD:
        hits = [i for i, v in enumerate(values) if _named_fields(v, header, names)]
    else:
        return None
    if not hits:
        return None
    return Finding(table, column, NAME_KIND, len(hits), len(values), f"row {hits[0]} ({NAME_METHOD})")


def _source_header(cfg: Config, table: str) -> list[str] | None:
    """The CSV header of the source a bronze or quarantine table keeps lines of."""
    layer, _, short = table.partition(".")
    for name, src in cfg.sources.items():
        if src.header and (src.bronze == table or (layer == "quarantine" and short == name)):
            return src.header.split(",")
    return None


def _sample(cfg: Config, name: str) -> dict[str, list[str]] | None:
    """column -> the first scan_rows values of each string column (nulls left out); None if not written."""
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder
    from deltalake.exceptions import TableNotFoundError

    from lakehouse.delta_reader import delta_exists

    ref = cfg.table(name)
    if not delta_exists(ref.path):
        return None
    try:
        table = DeltaTable(ref.path)
    except TableNotFoundError:  # a _delta_log folder without a commit yet
        return None
    # DataFusion's scan applies deletion vectors and column mapping.
    query = QueryBuilder().register("t", table).execute(f"SELECT * FROM t LIMIT {cfg.governance.scan_rows}")
    rows = pa.RecordBatchReader.from_stream(query).read_all()
    strings = [f.name for f in rows.schema
               if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type)]
    return {c: [v for v in rows.column(c).to_pylist() if v is not None] for c in strings}


def scan(cfg: Config) -> tuple[list[Finding], dict[str, int]]:
    """Findings for every written configured table, and the rows scanned per table."""
    names = set(cfg.governance.name_fields)
    findings, scanned = [], {}
    for name in cfg.table_names():
        sample = _sample(cfg, name)
        if sample is None:
            continue
        scanned[name] = max((len(v) for v in sample.values()), default=0)
        header = _source_header(cfg, name)
        for column, values in sample.items():
            for kind, (count, where) in scan_values(values).items():
                findings.append(Finding(name, column, kind, count, len(values), where))
            named = scan_names(name, column, values, header, names)
            if named:
                findings.append(named)
    return findings, scanned
