"""Per-batch preprocessing on cuDF when a GPU and cuDF are present, on pandas otherwise.

Each Arrow batch's inputs are conformed to the model's signature (numbers as float64, categories
as strings, nulls kept) before the pyfunc sees them. Both backends give the same frame; the
model itself takes pandas.
"""

from __future__ import annotations

import functools

import pandas as pd

from registry.inputs import conform as conform_pandas


@functools.lru_cache(maxsize=1)
def gpu_frames_available() -> bool:
    try:
        import cudf  # noqa: F401
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, no driver, no device: all mean "use pandas"
        return False


def backend(preference: str) -> str:
    if preference == "cudf" or (preference == "auto" and gpu_frames_available()):
        return "cudf" if gpu_frames_available() else "pandas"
    return "pandas"


def conform(pdf: pd.DataFrame, numeric, categorical, on: str = "pandas") -> pd.DataFrame:
    """The signature's columns with the signature's types, computed on the chosen backend."""
    if on == "cudf":
        import cudf

        frame = cudf.from_pandas(pdf[[*numeric, *categorical]])
        for c in numeric:
            frame[c] = frame[c].astype("float64")
        for c in categorical:
            frame[c] = frame[c].astype("str")
        return frame.to_pandas()
    return conform_pandas(pdf, numeric, categorical)
