"""The fairness slices as columns of the held-out rows: the training set's own, or joined as of each row's time.

The training set carries the transaction's context (country, channel), not who the customer is; a
slice such as the customer's segment comes from training.fairness.attributes_table, an SCD2 table,
taking the record valid at the transaction's event time (valid_from <= t < valid_to), so a customer
who changed segment later is judged in the segment they were in.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.errors import ConfigError

VALID_FROM, VALID_TO = "valid_from", "valid_to"  # silver's SCD2 validity window


def attribute_inputs(cfg: Config) -> list[str]:
    """The table the slices may be joined from: a declared input of the jobs that validate."""
    fc = cfg.training.fairness if cfg.training else None
    return [fc.attributes_table] if fc and fc.slices else []


def with_slices(run, cfg: Config, rows: DataFrame) -> DataFrame:
    """`rows` with every configured slice column; those it lacks joined from the attributes table at `run`'s version."""
    tc, fc = cfg.training, cfg.training.fairness
    wanted = [s for s in fc.slices if s not in rows.columns]
    if not wanted:
        return rows
    attributes = run.read(fc.attributes_table)
    lacking = [c for c in [fc.key, *wanted, VALID_FROM, VALID_TO] if c not in attributes.columns]
    if lacking or fc.key not in rows.columns:
        raise ConfigError(f"fairness slices {', '.join(wanted)} cannot be joined: "
                          f"{fc.attributes_table} lacks {', '.join(lacking) or '-'}"
                          f"{'' if fc.key in rows.columns else f'; {tc.training_set} lacks {fc.key}'}",
                          hint="training.fairness.slices must name training-set columns or columns of "
                               "attributes_table (an SCD2 table keyed by training.fairness.key)")
    key = "_slice_key"
    attrs = attributes.select(F.col(fc.key).alias(key), *wanted, VALID_FROM, VALID_TO)
    at = F.col(tc.timestamp)
    valid = (rows[fc.key] == attrs[key]) & (attrs[VALID_FROM] <= at) & (attrs[VALID_TO].isNull() | (at < attrs[VALID_TO]))
    return rows.join(attrs, valid, "left").drop(key, VALID_FROM, VALID_TO)
