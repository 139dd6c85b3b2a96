"""When a transaction's features are mature: once the history before it is as long as the longest window.

Earlier rows see windows cut short by the start of the data (a 30-day average on day 3), which no
later row looks like: training on them, or judging drift against them, compares ramp-up with steady
state. Training sets and scoring therefore start at the first mature day.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.errors import TidewaterError
from features.compute import EVENT_TIME


class HistoryTooShort(TidewaterError):
    """No transaction has a full feature window of history behind it yet."""


def history_start(txns: DataFrame) -> dt.date | None:
    """The first day of the transaction history (None: no history)."""
    return txns.agg(F.min(F.to_date(EVENT_TIME))).first()[0]


def first_mature_day(cfg: Config, txns: DataFrame) -> dt.date | None:
    start = history_start(txns)
    return None if start is None else start + dt.timedelta(days=cfg.features.maturity_days)


def mature(frame: DataFrame, day: dt.date | None) -> DataFrame:
    """The rows of `frame` on or after the first mature day."""
    return frame if day is None else frame.where(F.to_date(EVENT_TIME) >= F.lit(day))


def too_short(cfg: Config, txns: DataFrame) -> HistoryTooShort:
    start = history_start(txns)
    last = txns.agg(F.max(F.to_date(EVENT_TIME))).first()[0]
    span = (last - start).days + 1 if start else 0
    return HistoryTooShort(
        f"silver.transactions holds {span} day(s) of history from {start}; features need "
        f"{cfg.features.maturity_days} day(s) of it before a row is mature",
        hint="land more history (the demo generator's generator.warmup_days), or set "
             "features.mature_after_days: 0 to use features whose windows are not full yet")
