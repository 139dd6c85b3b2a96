"""Model inputs conformed to the signature: numbers as float64, categories as str, nulls kept as None.

One implementation for every caller: the input example logged with the model, scoring's pandas
UDF, holdout metrics and tests.
"""

from __future__ import annotations

import pandas as pd

from registry.contract import signature_columns


def conform(pdf: pd.DataFrame, numeric, categorical) -> pd.DataFrame:
    """The named columns with the signature's types (nullable ints arrive as floats; missing stays None)."""
    out = pd.DataFrame({c: pd.to_numeric(pdf[c], errors="coerce").astype("float64") for c in numeric},
                       index=pdf.index)
    for c in categorical:
        out[c] = pdf[c].astype(str).where(pdf[c].notna(), None)  # as the cuDF backend casts them
    return out


def signature_input(model, pdf: pd.DataFrame) -> pd.DataFrame:
    """`pdf` conformed to a loaded pyfunc's own input signature."""
    numeric, categorical = signature_columns(model.metadata.get_input_schema())
    return conform(pdf, numeric, categorical)
