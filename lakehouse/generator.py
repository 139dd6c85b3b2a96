"""The demo scenario's source system: card transactions with planted fraud, defects and drift.

Seeded and deterministic: the same settings write byte-identical files. Each day is generated from
its own seed and written straight to disk, so memory stays flat from 1k to 10M+ transactions.
Every arrival batch is one folder `batch-<date>` in the landing folder; `_manifest.json` says what
was planted (fraud, each defect type) so tests and users can check the pipeline against it.

`warmup_days` of history come first, at the same daily rate: a platform goes live on a source with a
past, so the 30-day features are full (stationary) from the first scored day, not ramping up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lakehouse.landing import complete_file, part_path

DEFECT_TYPES = ("malformed", "wrong_type", "null_key", "negative_amount", "duplicate_txn_id",
                "late_event", "unknown_currency")
# What silver does with each planted defect: the quarantine reason, or where the row ends up.
DEFECT_OUTCOME = {
    "malformed": "quarantine:malformed_record",
    "wrong_type": "quarantine:invalid_type",
    "null_key": "quarantine:null_key",
    "negative_amount": "quarantine:negative_amount",
    "unknown_currency": "quarantine:unknown_currency",
    "duplicate_txn_id": "duplicate",
    "late_event": "silver",
}

HOME_COUNTRIES = {"DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR", "GB": "GBP",
                  "US": "USD", "CA": "CAD", "AU": "AUD", "JP": "JPY"}
DRIFT_COUNTRIES = {"BR": "BRL", "MX": "MXN"}
EUR_RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "CAD": 1.47, "AUD": 1.64, "JPY": 161.0,
             "BRL": 5.9, "MXN": 18.5}
UNKNOWN_CURRENCIES = ("XXX", "ZZZ", "ABC")
# Days from a transaction to its label (inclusive ranges): chargebacks come fast, "all clear" slowly.
FRAUD_LABEL_DELAY_DAYS = (1, 5)
LEGIT_LABEL_DELAY_DAYS = (3, 11)
CATEGORIES = ("grocery", "restaurant", "fuel", "travel", "electronics", "fashion", "pharmacy",
              "entertainment", "jewelry", "digital_goods")
RISKY_CATEGORIES = ("electronics", "jewelry", "digital_goods")
CHANNELS = ("pos", "ecom", "atm")
SEGMENTS = ("mass", "affluent", "student", "business")
CITIES = ("north", "south", "east", "west", "central")
CUSTOMER_HEADER = "customer_id,customer_name,email,card_number,segment,city,country,updated_at"
MERCHANT_HEADER = "merchant_id,merchant_name,category,country,updated_at"


@dataclass
class Manifest:
    seed: int
    rows: int
    days: int
    start_date: str
    defect_rate: float
    fraud_rate: float
    drift_from_day: int | None
    warmup_days: int = 0
    transactions_written: int = 0
    transactions_clean: int = 0
    fraud_transactions: int = 0
    fraud_patterns: dict[str, int] = field(default_factory=dict)
    defects: dict[str, int] = field(default_factory=lambda: {d: 0 for d in DEFECT_TYPES})
    customers: int = 0
    customer_changes: int = 0
    merchants: int = 0
    labels: int = 0
    labels_not_yet_arrived: int = 0
    batches: list[str] = field(default_factory=list)

    def expected(self) -> dict:
        """What a correct pipeline makes of these files."""
        quarantine: dict[str, int] = {}
        for defect, n in self.defects.items():
            outcome = DEFECT_OUTCOME[defect]
            if outcome.startswith("quarantine:"):
                reason = outcome.split(":", 1)[1]
                quarantine[reason] = quarantine.get(reason, 0) + n
        quarantined = sum(quarantine.values())
        duplicates = self.defects["duplicate_txn_id"]
        return {
            "bronze_transactions": self.transactions_written,
            "silver_transactions": self.transactions_written - quarantined - duplicates,
            "quarantine_transactions": quarantine,
            "duplicate_transactions": duplicates,
        }


class _Population:
    """Customers and merchants: fixed per seed, small enough to hold (one row per entity)."""

    def __init__(self, rng: np.random.Generator, n_customers: int, n_merchants: int):
        homes = list(HOME_COUNTRIES)
        self.n_customers, self.n_merchants = n_customers, n_merchants
        self.home = rng.choice(len(homes), n_customers, p=_weights(len(homes), rng))
        self.mean_spend = rng.lognormal(3.4, 0.6, n_customers)  # EUR, per customer
        self.activity = rng.pareto(1.5, n_customers) + 1.0
        self.activity /= self.activity.sum()
        self.segment = rng.integers(0, len(SEGMENTS), n_customers)
        self.city = rng.integers(0, len(CITIES), n_customers)
        self.card_number = rng.integers(4_000_000_000_000_000, 4_999_999_999_999_999, n_customers,
                                        dtype=np.int64)
        self.merchant_cat = rng.integers(0, len(CATEGORIES), n_merchants)
        self.merchant_country = rng.choice(len(homes), n_merchants)
        self.merchant_risky = rng.random(n_merchants) < 0.03
        self.homes = homes


class _LabelMailbox:
    """Labels arrive days after their transaction: each is appended straight to the labels file of
    the batch it arrives with, so no day's labels wait in memory. Labels due after the last batch
    have not arrived yet and are only counted."""

    def __init__(self, out: Path, start: dt.date, days: int, first_day: int = 0):
        self.out, self.start, self.days = out, start, days
        self.delivered: dict[int, int] = {}
        self.undelivered = 0
        self._files: dict[int, object] = {}
        for day in range(first_day, days):  # a rerun into the same folder starts these files afresh
            self._path(day).unlink(missing_ok=True)
            part_path(self._path(day)).unlink(missing_ok=True)

    def _path(self, day: int) -> Path:
        return self.out / f"batch-{(self.start + dt.timedelta(days=day)).isoformat()}" / "labels.jsonl"

    def post(self, due_day: int, line: str) -> None:
        if due_day >= self.days:
            self.undelivered += 1
            return
        if due_day not in self._files:
            self._path(due_day).parent.mkdir(parents=True, exist_ok=True)
            self._files[due_day] = open(part_path(self._path(due_day)), "a")  # renamed in place at close_day
        self._files[due_day].write(line + "\n")
        self.delivered[due_day] = self.delivered.get(due_day, 0) + 1

    def close_day(self, day: int) -> None:
        """No more labels can arrive for `day` (delays are at least one day): close its file."""
        f = self._files.pop(day, None)
        if f is not None:
            f.close()
            os.replace(part_path(self._path(day)), self._path(day))
        else:
            self._path(day).touch()


def _weights(n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.random(n) + 0.5
    return w / w.sum()


def _customer_id(i: int) -> str:
    return f"C{i:07d}"


def _merchant_id(i: int) -> str:
    return f"M{i:06d}"


def _customer_row(pop: _Population, i: int, segment: int, city: int, updated_at: str) -> str:
    return ",".join([_customer_id(i), f"Customer {i}", f"customer{i}@example.com",
                     str(pop.card_number[i]), SEGMENTS[segment], CITIES[city],
                     pop.homes[pop.home[i]], updated_at])


def generate(out_dir: str | Path, *, seed: int = 42, rows: int = 20000, days: int = 14,
             start_date: str = "2026-01-01", defect_rate: float = 0.02, fraud_rate: float = 0.02,
             drift_from_day: int | None = None, warmup_days: int = 0, first_day: int = 0,
             progress: Callable[[str], None] | None = None) -> Manifest:
    """Write `days` arrival batches from `start_date` holding about `rows` transactions into `out_dir`,
    after `warmup_days` batches of history before it at the same daily rate.

    `first_day` > 0 continues the same scenario: only days first_day .. days-1 are written (same
    customers, merchants and ids that do not collide with the earlier days'); labels due to the earlier
    days' transactions in these days are not re-sent.
    """
    if rows < 1 or days < 1 or warmup_days < 0:
        raise ValueError("rows and days must be positive, warmup_days not negative")
    if not 0 <= first_day < days:
        raise ValueError("first_day must be a day of the scenario (0 .. days-1)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Internally day 0 is the first warm-up day; drift_from_day and first_day count from start_date.
    start = dt.date.fromisoformat(start_date) - dt.timedelta(days=warmup_days)
    first = 0 if first_day == 0 else warmup_days + first_day
    rng = np.random.default_rng(seed)
    # The population is sized by the scored rows: with the warm-up, each customer has about 40 of them
    # and (warmup_days + days) / days times that in all, so windowed counts are not all small integers.
    pop = _Population(rng, n_customers=int(np.clip(rows // 40, 50, 250_000)),
                      n_merchants=int(np.clip(rows // 200, 20, 50_000)))
    segment, city = pop.segment.copy(), pop.city.copy()
    man = Manifest(seed, rows, days, start_date, defect_rate, fraud_rate, drift_from_day, warmup_days,
                   customers=pop.n_customers, merchants=pop.n_merchants)
    total = warmup_days + days
    labels = _LabelMailbox(out, start, total, first)
    carried_duplicates: list[str] = []
    per_day = np.full(total, rows // days)
    per_day[warmup_days: warmup_days + rows % days] += 1

    for day in range(first, total):
        date = start + dt.timedelta(days=day)
        batch = out / f"batch-{date.isoformat()}"
        batch.mkdir(exist_ok=True)
        drng = np.random.default_rng([seed, day])
        midnight = dt.datetime.combine(date, dt.time(), dt.timezone.utc)
        updated_at = (midnight + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

        # Customers: everyone on the first day written, then the few whose segment or city changed (SCD2 input).
        if day == first:
            changed = np.arange(pop.n_customers)
        else:
            changed = np.flatnonzero(drng.random(pop.n_customers) < 0.005)
            man.customer_changes += len(changed)
            segment[changed] = drng.integers(0, len(SEGMENTS), len(changed))
            city[changed] = drng.integers(0, len(CITIES), len(changed))
        with complete_file(batch / "customers.csv") as f:
            f.write(CUSTOMER_HEADER + "\n")
            for i in changed:
                f.write(_customer_row(pop, int(i), int(segment[i]), int(city[i]), updated_at) + "\n")
        if day == first:
            with complete_file(batch / "merchants.csv") as f:
                f.write(MERCHANT_HEADER + "\n")
                for m in range(pop.n_merchants):
                    f.write(f"{_merchant_id(m)},Merchant {m},{CATEGORIES[pop.merchant_cat[m]]},"
                            f"{pop.homes[pop.merchant_country[m]]},{updated_at}\n")

        resent, carried_duplicates = carried_duplicates, []
        lines = _day_transactions(drng, pop, man, day, midnight, int(per_day[day]), labels,
                                  carried_duplicates)
        # A duplicate is resent in the next batch (the last batch repeats its own).
        lines += resent + (carried_duplicates if day == total - 1 else [])
        man.transactions_written += len(lines)
        with complete_file(batch / "transactions.jsonl") as f:
            f.writelines(line + "\n" for line in lines)
        labels.close_day(day)
        man.batches.append(batch.name)
        if progress:
            progress(f"{batch.name}: {len(lines)} transactions, {len(changed)} customer rows, "
                     f"{labels.delivered.get(day, 0)} labels")

    man.labels = sum(labels.delivered.values())
    man.labels_not_yet_arrived = labels.undelivered
    (out / "_manifest.json").write_text(json.dumps(asdict(man) | {"expected": man.expected()}, indent=2))
    return man


def _day_transactions(rng, pop: _Population, man: Manifest, day: int, midnight: dt.datetime, n: int,
                      labels: _LabelMailbox, carried: list[str]) -> list[str]:
    """One day's transaction lines (clean, fraud and defective); their labels go to the mailbox."""
    cust = rng.choice(pop.n_customers, n, p=pop.activity)
    merch = rng.integers(0, pop.n_merchants, n)
    amount_eur = rng.lognormal(np.log(pop.mean_spend[cust]), 0.5)
    country = pop.home[cust].astype(object)
    country = np.array([pop.homes[c] for c in country], dtype=object)
    abroad = rng.random(n) < 0.04
    country[abroad] = rng.choice(pop.homes, abroad.sum())
    channel = rng.choice(len(CHANNELS), n, p=[0.6, 0.35, 0.05])
    seconds = np.sort(rng.integers(0, 86400, n))
    category = pop.merchant_cat[merch].copy()

    # Planted fraud: risky merchants defraud more; each fraud row follows one pattern.
    p_fraud = np.where(pop.merchant_risky[merch], man.fraud_rate * 6, man.fraud_rate * 0.85)
    fraud = rng.random(n) < p_fraud
    pattern = rng.integers(0, 4, n)
    names = ("amount_spike", "unusual_country_category", "risky_merchant", "velocity_burst")
    for k, name in enumerate(names):
        man.fraud_patterns[name] = man.fraud_patterns.get(name, 0) + int((fraud & (pattern == k)).sum())
    spike = fraud & (pattern == 0)
    amount_eur[spike] *= rng.uniform(6, 15, spike.sum())
    odd = fraud & (pattern == 1)
    country[odd] = rng.choice(pop.homes, odd.sum())
    category[odd] = rng.choice([CATEGORIES.index(c) for c in RISKY_CATEGORIES], odd.sum())
    risky_ids = np.flatnonzero(pop.merchant_risky)
    risky = fraud & (pattern == 2)
    if len(risky_ids):
        merch[risky] = rng.choice(risky_ids, risky.sum())
        category[risky] = pop.merchant_cat[merch[risky]]
    channel[risky | odd] = 1
    burst = np.flatnonzero(fraud & (pattern == 3))

    # Drift: from day K (after the warm-up) a new region appears and amounts shift up.
    if man.drift_from_day is not None and day >= man.warmup_days + man.drift_from_day:
        moved = rng.random(n) < 0.25
        country[moved] = rng.choice(list(DRIFT_COUNTRIES), moved.sum())
        amount_eur *= 1.6

    currency = np.array([HOME_COUNTRIES.get(c) or DRIFT_COUNTRIES[c] for c in country], dtype=object)
    rates = np.array([EUR_RATES[c] for c in currency])
    amount = np.round(amount_eur * rates, 2)
    ip_a, ip_b = rng.integers(1, 255, n), rng.integers(0, 255, n)
    defect_draw = rng.random(n) < man.defect_rate
    defect_kind = rng.integers(0, len(DEFECT_TYPES), n)
    late_days = np.minimum(rng.integers(2, 10, n), day)  # never before the source's first day
    label_delay = np.where(fraud, rng.integers(FRAUD_LABEL_DELAY_DAYS[0], FRAUD_LABEL_DELAY_DAYS[1] + 1, n),
                           rng.integers(LEGIT_LABEL_DELAY_DAYS[0], LEGIT_LABEL_DELAY_DAYS[1] + 1, n))

    lines: list[str] = []
    burst_set = set(burst.tolist())
    for i in range(n):
        c = int(cust[i])
        ts = midnight + dt.timedelta(seconds=int(seconds[i]))
        rec = {
            "txn_id": f"T{day:04d}{i:07d}", "card_id": f"K{c:07d}", "customer_id": _customer_id(c),
            "merchant_id": _merchant_id(int(merch[i])), "merchant_category": CATEGORIES[category[i]],
            "amount": float(amount[i]), "currency": currency[i], "country": country[i],
            "channel": CHANNELS[channel[i]], "device_id": f"D{c % 9973:04d}{int(fraud[i]) * 7}",
            "event_time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "card_number": str(pop.card_number[c]),
            "customer_name": f"Customer {c}", "email": f"customer{c}@example.com",
            "ip_address": f"10.{ip_a[i]}.{ip_b[i]}.{(c * 7) % 250 + 1}",
        }
        group = [rec]
        if i in burst_set:  # velocity burst: the same card, several times within minutes
            for j in range(int(rng.integers(2, 5))):
                extra = dict(rec, txn_id=f"{rec['txn_id']}B{j}",
                             event_time=(ts + dt.timedelta(seconds=int(rng.integers(20, 300)) * (j + 1)))
                             .strftime("%Y-%m-%dT%H:%M:%SZ"),
                             amount=float(np.round(amount[i] * rng.uniform(0.5, 1.5), 2)))
                group.append(extra)
        for r in group:
            line, defect = _maybe_defect(rng, r, bool(defect_draw[i]) and r is rec,
                                         DEFECT_TYPES[defect_kind[i]], int(late_days[i]))
            if defect:
                man.defects[defect] += 1
            lines.append(line)
            if defect == "duplicate_txn_id":
                carried.append(line)
            if defect in (None, "late_event", "duplicate_txn_id"):
                man.transactions_clean += 1
                man.fraud_transactions += int(fraud[i])
                label = json.dumps({"txn_id": r["txn_id"], "is_fraud": bool(fraud[i]),
                                    "label_time": (ts + dt.timedelta(days=int(label_delay[i])))
                                    .strftime("%Y-%m-%dT%H:%M:%SZ")})
                labels.post(day + int(label_delay[i]), label)
    return lines


def continue_scenario(landing: Path, out: Path, days: int) -> Manifest:
    """The `days` days after the newest batch in `landing`, of the scenario its manifest describes (same
    seed and settings, so the same customers and merchants), written to `out`: benchmarks add load so."""
    manifest = json.loads((landing / "_manifest.json").read_text())
    settings = {k: manifest[k] for k in ("seed", "rows", "days", "start_date", "defect_rate", "fraud_rate",
                                         "drift_from_day", "warmup_days")}
    per_day = settings["rows"] / settings["days"]
    landed = max(dt.date.fromisoformat(p.name.removeprefix("batch-")) for p in landing.glob("batch-????-??-??"))
    first = (landed - dt.date.fromisoformat(settings["start_date"])).days + 1
    return generate(out, **{**settings, "days": first + days, "rows": round(per_day * (first + days)),
                            "first_day": first})


def expected_labels(rows: int, days: int, first_days: int, fraud_rate: float) -> tuple[float, float]:
    """(labels, fraud labels) expected to have arrived by the end of day `first_days` - 1: what a model
    trained then can learn from (the label delays above, uniform over their ranges)."""
    per_day = rows / days

    def arrived(delays: tuple[int, int], day: int) -> float:
        lo, hi = delays
        return min(max(first_days - 1 - day - lo + 1, 0), hi - lo + 1) / (hi - lo + 1)

    legit = sum(arrived(LEGIT_LABEL_DELAY_DAYS, d) for d in range(first_days)) * per_day * (1 - fraud_rate)
    fraud = sum(arrived(FRAUD_LABEL_DELAY_DAYS, d) for d in range(first_days)) * per_day * fraud_rate
    return legit + fraud, fraud


def _maybe_defect(rng, rec: dict, planted: bool, kind: str, late_days: int) -> tuple[str, str | None]:
    if not planted or (kind == "late_event" and late_days == 0):  # nothing came before the first day
        return json.dumps(rec), None
    rec = dict(rec)
    if kind == "malformed":
        text = json.dumps(rec)
        return text[: len(text) // 2], kind
    if kind == "wrong_type":
        rec["amount"] = f"{rec['amount']}EUR" if rng.random() < 0.5 else "n/a"
    elif kind == "null_key":
        rec["txn_id"] = None
    elif kind == "negative_amount":
        rec["amount"] = -abs(rec["amount"]) - 1.0
    elif kind == "unknown_currency":
        rec["currency"] = UNKNOWN_CURRENCIES[int(rng.integers(0, len(UNKNOWN_CURRENCIES)))]
    elif kind == "late_event":
        ts = dt.datetime.strptime(rec["event_time"], "%Y-%m-%dT%H:%M:%SZ") - dt.timedelta(days=late_days)
        rec["event_time"] = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(rec), kind
