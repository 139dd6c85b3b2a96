"""Every validated model version's card (JSON and HTML) and ML-BOM, logged to the version's MLflow run.

The card answers what a reviewer asks before a model serves: what it is for (training.model_card),
what data it learned from (tables and Delta versions), which code, how well it ranks and where its
decision threshold sits and why, how its alerts fall on groups (the fairness gate), and what it
cannot do. Everything comes from the registry (the run's tags, params and environment artifacts)
and from the decision validation just made, so rerunning validate_model rewrites the same card.
"""

from __future__ import annotations

import html
import json
import tempfile
from pathlib import Path

from lakehouse.config import Config
from registry import contract

OUTPUT = "score: the probability that the transaction is fraud (flag when score >= threshold)"


def _datasets(tags: dict, slice_inputs: dict[str, int | None]) -> list[dict]:
    """The Delta tables and versions behind the version: its training set, what built that, the slices' source."""
    out = [{"table": tags[contract.TRAINING_SET], "version": int(tags[contract.TRAINING_SET_VERSION]),
            "role": "training set (train, validation and held-out slices by time)"}]
    for key, version in sorted(tags.items()):
        if key.startswith(contract.INPUT_PREFIX) and version != "none":
            out.append({"table": key[len(contract.INPUT_PREFIX):], "version": int(version),
                        "role": "input of the training set"})
    out += [{"table": t, "version": v, "role": "source of the fairness slices"}
            for t, v in slice_inputs.items() if v is not None]
    seen = set()
    return [d for d in out if (d["table"], d["version"]) not in seen and not seen.add((d["table"], d["version"]))]


def _threshold_rule(cfg: Config) -> str:
    dc = cfg.training.decision_threshold
    if dc.rule == "alert_budget":
        return f"alert_budget: flag at most {dc.alert_share:.1%} of the legitimate rows of the validation slice"
    return f"precision: the lowest threshold whose precision on the validation slice reaches {dc.precision}"


def _limitations(cfg: Config, fairness: dict, holdout: dict) -> list[str]:
    out = list(cfg.training.model_card.limitations)
    for name, report in fairness["slices"].items():
        small = [g["group"] for g in report["groups"] if not g["gated"]]
        if small:
            out.append(f"{name}: groups under {fairness['min_group_rows']} held-out rows are reported, not gated: "
                       + ", ".join(small))
    undefined = [k for k, v in holdout.items() if v is None]
    if undefined:
        out.append(f"undefined on the held-out slice: {', '.join(undefined)}")
    return out


def model_card(cfg: Config, version, run, decision, holdout: dict[str, float], fairness: dict,
               slice_inputs: dict[str, int | None]) -> dict:
    """The card of `version` (its MLflow `run`), after `decision`; every value JSON-ready."""
    tc, use = cfg.training, cfg.training.model_card
    params, tags = run.data.params, run.data.tags
    clean = {k: (None if v != v else v) for k, v in holdout.items()}
    return {
        "model": {"name": tc.model_name, "version": int(version), "mlflow_run_id": run.info.run_id,
                  "architecture": f"MLP {params.get('hidden_units', '?')}, embeddings of {params.get('embedding_dim', '?')}",
                  "numeric_inputs": [c for c in params.get("numeric_features", "").split(",") if c],
                  "categorical_inputs": [c for c in params.get("categorical_features", "").split(",") if c],
                  "output": OUTPUT},
        "intended_use": {"use": use.intended_use, "users": list(use.users), "out_of_scope": list(use.out_of_scope)},
        "training_data": {
            "datasets": _datasets(tags, slice_inputs),
            "built_by_run": tags.get(contract.TRAINING_SET_BUILT_BY),
            "rows": {k: int(params[p]) for k, p in (("train", "train_rows"), ("validation", "validation_rows"),
                                                     ("holdout", contract.HOLDOUT_ROWS)) if p in params},
            "validation_from": params.get(contract.VALIDATION_FROM), "holdout_from": params.get(contract.HOLDOUT_FROM)},
        "code_version": tags.get(contract.CODE_VERSION, "unknown"),
        "training": {k: params[k] for k in ("engine", "num_proc", "seed", "batch_size", "learning_rate",
                                            "max_epochs", "patience") if k in params},
        "threshold": {"value": decision.threshold, "chosen_by": _threshold_rule(cfg), "result": decision.threshold_rule},
        "metrics": {"holdout": clean,
                    "slices": {name: r["groups"] for name, r in fairness["slices"].items()}},
        "fairness": {**fairness, "gate": "promotion is blocked while a gated group's gap exceeds max_gap "
                                         "(training.fairness)"},
        "decision": {"verdict": "rejected" if decision.deployed_as is None else
                     "promoted" if decision.promoted else decision.deployed_as,
                     "reason": decision.reason, "compared_with": decision.champion_version,
                     "decided_at": decision.decided_at.isoformat(), "run_id": decision.run_id},
        "limitations": _limitations(cfg, fairness, clean),
    }


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r.values())
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _items(values) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(str(v))}</li>" for v in values) + "</ul>"


def card_html(card: dict) -> str:
    """The card as one self-contained HTML page."""
    m, use, data = card["model"], card["intended_use"], card["training_data"]
    e = html.escape
    fairness = "".join(f"<h3>{e(name)}</h3>{_table(r['groups'])}<p>gaps: "
                       + e(", ".join(f"{k} {g['gap']} ({g['highest']} vs {g['lowest']})" for k, g in r["gaps"].items())
                           or "none gated") + "</p>"
                       for name, r in card["fairness"]["slices"].items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model card: {e(m['name'])} v{m['version']}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}</style></head><body>
<h1>Model card: {e(m['name'])} v{m['version']}</h1>
<p>Decision: <b>{e(card['decision']['verdict'])}</b> ({e(card['decision']['reason'])})</p>
<h2>Intended use</h2><p>{e(use['use'])}</p><p>Users:</p>{_items(use['users'])}
<p>Out of scope:</p>{_items(use['out_of_scope'])}
<h2>Model</h2><p>{e(m['architecture'])}; output: {e(m['output'])}; MLflow run {e(m['mlflow_run_id'])};
code {e(card['code_version'])}</p>
<h2>Training data</h2>{_table(data['datasets'])}<p>rows: {e(json.dumps(data['rows']))}; validation from
{e(str(data['validation_from']))}, held out from {e(str(data['holdout_from']))}</p>
<h2>Decision threshold</h2><p>{card['threshold']['value']:.6f}: {e(card['threshold']['chosen_by'])}
({e(card['threshold']['result'])})</p>
<h2>Metrics on the held-out slice</h2>{_table([card['metrics']['holdout']])}
<h2>Fairness: {'passed' if card['fairness']['passed'] else 'failed'}</h2>
<p>Bounds: {e(json.dumps(card['fairness']['max_gap']))}; groups under {card['fairness']['min_group_rows']}
rows are reported, not gated.</p>{_items(card['fairness']['violations'])}{fairness}
<h2>Limitations</h2>{_items(card['limitations'])}
</body></html>
"""


def _environment(client, run_id: str, tmp: Path) -> tuple[str, dict]:
    """The training environment as the run logged it (requirements lines, versions); empty when absent."""
    logged = {a.path for a in client.list_artifacts(run_id, "environment")}
    requirements = (Path(client.download_artifacts(run_id, contract.ENVIRONMENT_REQUIREMENTS, str(tmp))).read_text()
                    if contract.ENVIRONMENT_REQUIREMENTS in logged else "")
    versions = (json.loads(Path(client.download_artifacts(run_id, contract.ENVIRONMENT_VERSIONS, str(tmp))).read_text())
                if contract.ENVIRONMENT_VERSIONS in logged else {})
    return requirements, versions


def log_model_documents(client, cfg: Config, version, decision, holdout: dict[str, float], fairness: dict,
                        slice_inputs: dict[str, int | None]) -> dict:
    """Build the card and ML-BOM of `version` and log them, with the fairness report and gaps, to its run."""
    from training.ml_bom import ml_bom

    name = cfg.training.model_name
    run = client.get_run(client.get_model_version(name, str(version)).run_id)
    run_id = run.info.run_id
    card = model_card(cfg, version, run, decision, holdout, fairness, slice_inputs)
    with tempfile.TemporaryDirectory() as tmp:
        requirements, versions = _environment(client, run_id, Path(tmp))
    bom = ml_bom(card, requirements, versions)
    for path, text in ((contract.MODEL_CARD_JSON, json.dumps(card, indent=2)), (contract.MODEL_CARD_HTML, card_html(card)),
                       (contract.ML_BOM, json.dumps(bom, indent=2)), (contract.FAIRNESS_REPORT, json.dumps(fairness, indent=2))):
        client.log_text(run_id, text, path)
    for slice_name, report in fairness["slices"].items():
        for metric, gap in report["gaps"].items():
            client.log_metric(run_id, f"fairness_gap_{slice_name}_{metric}", gap["gap"])
    return card
