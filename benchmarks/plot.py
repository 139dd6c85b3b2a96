"""How the lakehouse stages' cost grows with rows: benchmarks/lakehouse.py's JSON files as one plot.

    .venv/bin/python benchmarks/plot.py benchmarks/results/lakehouse-*.json --out benchmarks/results/lakehouse.png

Seconds per stage against transactions (log-log), Tidewater solid and the DuckDB + delta-rs peer
dashed; a straight line of slope 1 is linear cost. Also prints the README's table from the same files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STAGES = {"bronze": "bronze", "silver": "silver (+quarantine)", "gold": "gold", "total": "total"}


def load(paths: list[Path]) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in paths]
    return sorted(runs, key=lambda r: r["transactions"])


def markdown(runs: list[dict]) -> str:
    """One row per (size, stage): seconds side by side and the ratio, as the README shows them."""
    lines = ["| transactions | stage | Tidewater s | DuckDB + delta-rs s | ratio | Tidewater µs/row |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        for name, label in STAGES.items():
            st = run["stages"][name]
            peer = "-" if st["peer_s"] is None else f"{st['peer_s']:.2f}"
            ratio = "-" if st["ratio"] is None else f"{st['ratio']:.1f}x"
            per_row = 1e6 * st["tidewater_s"] / run["transactions"]
            lines.append(f"| {run['transactions']:,} | {label} | {st['tidewater_s']:.1f} | {peer} | {ratio} | {per_row:.1f} |")
    return "\n".join(lines)


def plot(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r["transactions"] for r in runs]
    for i, (name, label) in enumerate(STAGES.items()):
        color = f"C{i}"
        ax.plot(rows, [r["stages"][name]["tidewater_s"] for r in runs], "o-", color=color, label=f"Tidewater {label}")
        measured = [(r["transactions"], r["stages"][name]["peer_s"]) for r in runs
                    if r["stages"][name]["peer_s"] is not None]  # a size the peer did not finish has no point
        if measured:
            ax.plot(*zip(*measured), "s--", color=color, alpha=0.7, label=f"DuckDB+delta-rs {label}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("transactions")
    ax.set_ylabel("seconds (one first run, 2 cores)")
    ax.set_title("Lakehouse stages: Tidewater vs DuckDB + delta-rs on the same files")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON files written by benchmarks/lakehouse.py --json")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lakehouse.png"))
    args = parser.parse_args()
    runs = load(args.files)
    print(markdown(runs))
    plot(runs, args.out)
    print(f"\nplot: {args.out}")


if __name__ == "__main__":
    main()
