"""The notebooks execute top to bottom against a real lakehouse."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str, root: Path, monkeypatch) -> str:
    """Run a notebook against the lakehouse at `root`; return the text of all its outputs."""
    monkeypatch.setenv("TIDEWATER_ROOT", str(root))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
def test_lakehouse_tour_executes(lake, monkeypatch):
    text = execute("01_lakehouse_tour.ipynb", lake.root, monkeypatch)
    assert "silver.transactions" in text
    assert "unknown_currency" in text  # the quarantine table was read
    assert "build_gold" in text and "refine_silver" in text  # the lineage chain was walked


@pytest.mark.slow
def test_features_notebook_executes(spark, lake, monkeypatch):
    from features.offline import compute_features
    from features.online import materialize_online
    from features.training_set import build_training_set

    compute_features(spark, lake.cfg)  # no-ops when the feature tests already ran on this lakehouse
    build_training_set(spark, lake.cfg)
    materialize_online(spark, lake.cfg)
    text = execute("02_features.ipynb", lake.root, monkeypatch)
    assert "customer_features" in text and "labelled rows" in text and "online" in text
