"""Read grants on the platform's own SQL surfaces: which tables a role may name, which columns it sees.

A restricted identity's session names only the tables its role may read, and names them as views:
without the `pii` grant the token columns silver derives (card_hash, ...) and raw payloads are left
out of them. The Delta tables themselves sit under a database no restricted query may name, and
reading files by path is switched off, so the views are the only way to the data.
"""

from __future__ import annotations

import re
from typing import Callable

from lakehouse.config import Config
from lakehouse.errors import AccessDenied
from lakehouse.identity import Identity
from lakehouse.refine import CUSTOMER_RULES, MERCHANT_RULES, TRANSACTION_RULES

RAW_PAYLOAD = "raw"  # bronze's and quarantine's line as it landed
PII_COLUMNS = frozenset({RAW_PAYLOAD, *[token for rules in (TRANSACTION_RULES, CUSTOMER_RULES, MERCHANT_RULES)
                                        for token in rules.hashed.values()]})
HIDDEN_PREFIX = "_tidewater_raw_"  # database of the tables behind a restricted session's views
QUERY_START = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*|\(\s*)*(select|with|values|table|from|show|describe|desc)\b",
                         re.IGNORECASE | re.DOTALL)
FILE_ACCESS = re.compile(r"\w+\s*\.\s*`[^`]*[/:][^`]*`|\bread_files\s*\(|" + HIDDEN_PREFIX, re.IGNORECASE)


def grant_hint(cfg: Config, who: Identity) -> str:
    read = ", ".join(who.grants.read) or "nothing"
    return f"role {who.role} reads {read} (conf access.roles.{who.role}); ask an engineer for a grant"


def check_tables(cfg: Config, who: Identity, tables: list[str]) -> None:
    """Every table named must be readable by the identity's role."""
    for table in tables:
        if not who.grants.reads(table):
            raise AccessDenied(f"{who.name} (role {who.role}) has no read grant on {table}", hint=grant_hint(cfg, who))


def masked(who: Identity, columns: list[str]) -> list[str]:
    """The columns the identity does not see."""
    return [] if who.grants.pii else [c for c in columns if c in PII_COLUMNS]


def check_query(cfg: Config, who: Identity, query: str, tables: list[str]) -> None:
    """A restricted identity runs queries only, on granted tables, naming no masked column and no file."""
    if not who.restricted:
        return
    if not QUERY_START.match(query):
        raise AccessDenied(f"{who.name} (role {who.role}) may run queries only (SELECT, WITH, SHOW, DESCRIBE)",
                           hint="statements that change tables or settings need the engineer role")
    if FILE_ACCESS.search(query):
        raise AccessDenied(f"{who.name} (role {who.role}) may not read files or tables by path",
                           hint="name a configured table, for example gold.fraud_kpis")
    check_tables(cfg, who, tables)
    if not who.grants.pii:
        named = sorted(c for c in PII_COLUMNS if re.search(rf"(?<![\w]){c}(?![\w])", query, re.IGNORECASE))
        if named:
            raise AccessDenied(f"{who.name} (role {who.role}) has no PII grant: {', '.join(named)} is masked",
                               hint=f"{grant_hint(cfg, who)}; SELECT * leaves masked columns out")


def role_view_statements(cfg: Config, columns: Callable[[str], list[str] | None]) -> list[str]:
    """For the SQL server: each restricted role's database of views, one per granted table on storage
    (`analyst.silver_transactions`), PII columns left out where the role lacks the pii grant.
    `columns(table)` is the table's columns, None where it has not been written."""
    statements = []
    for name, role in cfg.access.roles.items():
        if not role.restricted:
            continue
        statements.append(f"CREATE DATABASE IF NOT EXISTS {name}")
        for table in cfg.table_names():
            cols = columns(table) if role.reads(table) else None
            if cols:
                shown = ", ".join(f"`{c}`" for c in cols if role.pii or c not in PII_COLUMNS)
                statements.append(f"CREATE OR REPLACE VIEW {name}.{table.replace('.', '_')} AS SELECT {shown} FROM {table}")
    return statements


def grant_settings(cfg: Config) -> dict[str, str]:
    """The grants as the SQL server's check rule reads them (jvm/.../GrantsCheck.java)."""
    prefix = "spark.tidewater.access."
    restricted = cfg.access.restricted_identities()
    settings = {f"{prefix}restricted": ",".join(f"{name}:{role}" for name, role in restricted.items()),
                f"{prefix}piiColumns": ",".join(sorted(PII_COLUMNS)),
                f"{prefix}tables": ",".join(f"{name}={cfg.table(name).path}" for name in cfg.table_names())}
    for role in sorted(set(restricted.values())):
        settings[f"{prefix}role.{role}.read"] = ",".join(cfg.access.roles[role].read)
        settings[f"{prefix}role.{role}.pii"] = str(cfg.access.roles[role].pii).lower()
    return settings
