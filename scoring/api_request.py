"""One transaction as a payment system sends it to the API: its schema, its checks, its model inputs.

The schema (pydantic) rejects missing fields, wrong types and NaN or infinite amounts; then the
row-level quarantine checks declared for silver.transactions (conf `quality:`) run on the request,
so a transaction the pipeline would quarantine is refused at the API with the same check's name.
Request-time inputs are computed with silver's and features.serving's formulas (amount in EUR rounded
half-up to cents, hour of day in UTC, amount over the 30-day average rounded half-up to 4 places).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, Field

from lakehouse.config import CheckConf, Config

ROW_CHECKS = ("not_null", "between", "in_set", "regex")


class Transaction(BaseModel):
    """A card transaction at the terminal (extra fields are ignored, never stored)."""

    txn_id: str = Field(min_length=1, max_length=128)
    customer_id: str = Field(min_length=1, max_length=128)
    merchant_id: str = Field(min_length=1, max_length=128)
    event_time: dt.datetime = Field(description="ISO 8601; without an offset it is UTC")
    amount: float = Field(allow_inf_nan=False, description="in `currency`")
    currency: str = Field(min_length=1, max_length=8)
    channel: str = Field(max_length=32)
    merchant_category: str | None = Field(None, max_length=64)
    country: str = Field(max_length=8, description="ISO 3166 alpha-2")

    def utc_time(self) -> dt.datetime:
        """Naive UTC, as Spark keeps event_time."""
        if self.event_time.tzinfo is None:
            return self.event_time
        return self.event_time.astimezone(dt.timezone.utc).replace(tzinfo=None)


def request_checks(cfg: Config) -> list[CheckConf]:
    """silver.transactions' row-level quarantine checks on columns a request carries."""
    table = cfg.quality.get("silver.transactions")
    return [c for c in (table.checks if table else []) if c.policy == "quarantine" and c.check in ROW_CHECKS
            and c.column in Transaction.model_fields]


def _failure(check: CheckConf, value) -> str | None:
    if value is None:
        return f"{check.name}: {check.column} is required" if check.check == "not_null" else None
    if check.check == "between" and ((check.min is not None and value < check.min)
                                      or (check.max is not None and value > check.max)):
        bounds = " and ".join(s for s in (f">= {check.min:g}" if check.min is not None else "",
                                          f"<= {check.max:g}" if check.max is not None else "") if s)
        return f"{check.name}: {check.column} must be {bounds}, got {value:g}"
    if check.check == "in_set" and str(value) not in (check.values or []):
        return f"{check.name}: {value!r} is not one of {', '.join(check.values or [])}"
    if check.check == "regex" and not re.search(check.pattern or "", str(value)):
        return f"{check.name}: {value!r} does not match {check.pattern}"
    return None


def violations(checks: list[CheckConf], txn: Transaction, loc: tuple = ("body",)) -> list[dict]:
    """FastAPI-shaped error entries ({loc, msg, type}) for each declared check the request fails."""
    out = []
    for check in checks:
        message = _failure(check, getattr(txn, check.column))
        if message:
            out.append({"loc": [*loc, check.column], "msg": message, "type": f"quality.{check.name}"})
    return out


def half_up(value: float, places: int) -> float:
    """Spark's round() of a double: its decimal text rounded half-up (not Python's half-even)."""
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def request_inputs(cfg: Config, txn: Transaction, avg_amount_30d: float | None) -> dict:
    """The model inputs the request itself gives (with_context's and silver's formulas)."""
    amount_eur = half_up(txn.amount / cfg.currencies[txn.currency], 2)
    ratio = None if not avg_amount_30d else half_up(amount_eur / avg_amount_30d, 4)
    return {"amount_eur": amount_eur, "hour_of_day": txn.utc_time().hour, "amount_vs_30d_avg": ratio,
            "channel": txn.channel, "merchant_category": txn.merchant_category, "country": txn.country}
