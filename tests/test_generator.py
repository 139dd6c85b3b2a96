"""The data generator: deterministic, honest about what it planted, and drifting when asked."""

import json
from pathlib import Path

from lakehouse.generator import DEFECT_TYPES, generate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _transactions(root: Path) -> list[str]:
    return [line for p in sorted(root.glob("batch-*/transactions.jsonl")) for line in p.read_text().splitlines()]


def test_same_seed_writes_identical_files(tmp_path):
    generate(tmp_path / "a", seed=3, rows=800, days=3)
    generate(tmp_path / "b", seed=3, rows=800, days=3)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    generate(tmp_path / "c", seed=4, rows=800, days=3)
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_one_folder_per_arrival_batch_with_jsonl_and_csv(tmp_path):
    man = generate(tmp_path, rows=600, days=3, start_date="2026-03-01")
    assert man.batches == ["batch-2026-03-01", "batch-2026-03-02", "batch-2026-03-03"]
    first = tmp_path / "batch-2026-03-01"
    assert {p.name for p in first.iterdir()} == {"transactions.jsonl", "customers.csv", "merchants.csv", "labels.jsonl"}
    assert (first / "customers.csv").read_text().startswith("customer_id,customer_name,email")


def test_manifest_counts_match_the_files(tmp_path):
    man = generate(tmp_path, seed=11, rows=4000, days=4, defect_rate=0.05)
    lines = _transactions(tmp_path)
    assert man.transactions_written == len(lines)
    assert all(man.defects[d] > 0 for d in DEFECT_TYPES)
    malformed = ids = 0
    seen: dict[str, int] = {}
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            malformed += 1
            continue
        if rec["txn_id"] is None:
            ids += 1
        else:
            seen[rec["txn_id"]] = seen.get(rec["txn_id"], 0) + 1
    assert malformed == man.defects["malformed"]
    assert ids == man.defects["null_key"]
    assert sum(n - 1 for n in seen.values()) == man.defects["duplicate_txn_id"]
    negative = sum(1 for line in lines if '"amount": -' in line)
    assert negative == man.defects["negative_amount"]
    saved = json.loads((tmp_path / "_manifest.json").read_text())
    assert saved["defects"] == man.defects
    assert saved["expected"]["bronze_transactions"] == len(lines)


def test_pii_is_in_the_clear_at_the_source(tmp_path):
    generate(tmp_path, rows=200, days=1)
    rec = json.loads(_transactions(tmp_path)[0])
    assert len(rec["card_number"]) == 16 and "@" in rec["email"] and rec["customer_name"]


def test_drift_switch_adds_a_region_and_shifts_amounts_from_day_k(tmp_path):
    generate(tmp_path, seed=5, rows=6000, days=6, defect_rate=0.0, drift_from_day=3)
    by_day: dict[int, list[dict]] = {}
    for d, path in enumerate(sorted(tmp_path.glob("batch-*/transactions.jsonl"))):
        by_day[d] = [json.loads(line) for line in path.read_text().splitlines()]
    new_region = {"BR", "MX"}
    for d in range(3):
        assert not any(r["country"] in new_region for r in by_day[d])
    for d in range(3, 6):
        share = sum(r["country"] in new_region for r in by_day[d]) / len(by_day[d])
        assert 0.15 < share < 0.35
    eur_before = [r["amount"] for d in range(3) for r in by_day[d] if r["currency"] == "EUR"]
    eur_after = [r["amount"] for d in range(3, 6) for r in by_day[d] if r["currency"] == "EUR"]
    assert sorted(eur_after)[len(eur_after) // 2] > 1.3 * sorted(eur_before)[len(eur_before) // 2]


def test_warm_up_history_comes_before_the_start_date_at_the_same_daily_rate(tmp_path):
    man = generate(tmp_path, seed=5, rows=3000, days=3, start_date="2026-03-01", warmup_days=4, drift_from_day=1,
                   defect_rate=0.2)
    assert man.batches[:5] == ["batch-2026-02-25", "batch-2026-02-26", "batch-2026-02-27", "batch-2026-02-28",
                               "batch-2026-03-01"] and len(man.batches) == 7
    days = {p.parent.name: [json.loads(line) for line in p.read_text().splitlines() if line.endswith("}")]
            for p in sorted(tmp_path.glob("batch-*/transactions.jsonl"))}
    counts = [len(rows) for rows in days.values()]
    assert max(counts) < 1.3 * min(counts)  # warm-up days at the scored days' rate (bursts vary a little)
    drifted = {name for name, rows in days.items() if any(r["country"] in {"BR", "MX"} for r in rows)}
    assert drifted == {"batch-2026-03-02", "batch-2026-03-03"}  # drift_from_day counts from the start date
    # no planted late event dates back before the source's first day
    assert min(r["event_time"] for rows in days.values() for r in rows) >= "2026-02-25T00:00:00Z"


def test_labels_arrive_after_their_transactions(tmp_path):
    generate(tmp_path, rows=2000, days=5, defect_rate=0.0)
    first_seen = {}
    for d, path in enumerate(sorted(tmp_path.glob("batch-*/transactions.jsonl"))):
        for line in path.read_text().splitlines():
            first_seen.setdefault(json.loads(line)["txn_id"], d)
    for d, path in enumerate(sorted(tmp_path.glob("batch-*/labels.jsonl"))):
        for line in path.read_text().splitlines():
            assert first_seen[json.loads(line)["txn_id"]] < d
