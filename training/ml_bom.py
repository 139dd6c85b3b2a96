"""A model version's CycloneDX 1.6 ML-BOM: the model, the data and code it came from, the environment that built it.

cyclonedx-python-lib builds the document's skeleton (components, purls, dependencies); it does not
yet model a component's `modelCard` or a data component's `data` (cyclonedx-python-lib#911), so
those are added to its JSON and the whole document is checked against the 1.6 schema the library
bundles (strict: no unknown properties) before anyone sees it.
"""

from __future__ import annotations

import json

from lakehouse.errors import TidewaterError

SPEC_VERSION = "1.6"
RATES = ("selection_rate", "false_positive_rate", "true_positive_rate")


class BomInvalid(TidewaterError):
    """The ML-BOM does not validate against the CycloneDX schema: a bug here, never logged."""


def requirement_pins(requirements: str) -> list[tuple[str, str]]:
    """(name, version) of each `name==version` line, as the training environment logged them."""
    pins = []
    for line in requirements.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name and version:
            pins.append((name, version))
    return pins


def data_ref(table: str, version) -> str:
    return f"data/{table}@v{version}"


def _data_block(dataset: dict) -> list[dict]:
    """The `data` of a data component: a Delta table at one version."""
    return [{"type": "dataset", "name": dataset["table"], "description": dataset["role"],
             "contents": {"properties": [{"name": "delta.table", "value": dataset["table"]},
                                         {"name": "delta.version", "value": str(dataset["version"])}]}}]


def _fairness_assessment(fairness: dict, where: str, group: dict, gaps: dict) -> dict:
    """One assessed group of a slice: its rates on the held-out rows, the gaps it bounds, and whether it was gated.

    Every group is listed, gated or not: a slice whose groups are all too small to gate was still assessed.
    """
    rates = ", ".join(f"{m.replace('_', ' ')} " + ("undefined" if group[m] is None else f"{group[m]:.3f}")
                      for m in RATES)
    harms = f"on {group['rows']} held-out rows ({group['positives']} fraud): {rates}"
    for metric, gap in gaps.items():
        if group["group"] in (gap["highest"], gap["lowest"]):
            side = "highest" if gap["highest"] == group["group"] else "lowest"
            bound = fairness["max_gap"].get(metric)
            harms += f"; {side} {metric} of the slice (gap {gap['gap']:.3f}" + (f", bound {bound})" if bound else ")")
    gate = (fairness["gate"] if group["gated"] else
            f"reported, not gated: under {fairness['min_group_rows']} held-out rows (its rates are mostly noise)")
    return {"groupAtRisk": where, "harms": harms, "mitigationStrategy": gate}


def _model_card_block(card: dict, datasets: list[dict]) -> dict:
    """The card as CycloneDX's modelCard: parameters, quantitative analysis (overall and per group), considerations."""
    model, use = card["model"], card["intended_use"]
    metrics = [{"type": k, "value": str(v), "slice": "held-out slice"}
               for k, v in card["metrics"]["holdout"].items() if v is not None]
    assessments = []
    for name, report in card["fairness"]["slices"].items():
        for group in report["groups"]:
            where = f"{name}={group['group']}"
            metrics += [{"type": m, "value": str(group[m]), "slice": where}
                        for m in RATES if group[m] is not None]
            assessments.append(_fairness_assessment(card["fairness"], where, group, report["gaps"]))
    return {
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": "binary classification (fraud probability)",
            "architectureFamily": "multilayer perceptron with categorical embeddings",
            "modelArchitecture": model["architecture"],
            "datasets": [{"ref": data_ref(d["table"], d["version"])} for d in datasets],
            "inputs": [{"format": f"{c} (number)"} for c in model["numeric_inputs"]]
                      + [{"format": f"{c} (category)"} for c in model["categorical_inputs"]],
            "outputs": [{"format": model["output"]}]},
        "quantitativeAnalysis": {"performanceMetrics": metrics},
        "considerations": {"users": use["users"], "useCases": [use["use"]],
                           "technicalLimitations": card["limitations"],
                           "ethicalConsiderations": [{"name": f"out of scope: {x}",
                                                      "mitigationStrategy": "a fraud analyst reviews every flag"}
                                                     for x in use["out_of_scope"]],
                           "fairnessAssessments": assessments}}


def ml_bom(card: dict, requirements: str, versions: dict) -> dict:
    """The ML-BOM of the version a model card describes, validated against CycloneDX 1.6."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    model = card["model"]
    datasets = card["training_data"]["datasets"]
    subject = Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=model["name"], version=str(model["version"]),
                        bom_ref=f"model/{model['name']}@v{model['version']}", description=card["intended_use"]["use"],
                        properties=[Property(name=f"tidewater:{k}", value=str(v)) for k, v in (
                            ("mlflow_run_id", model["mlflow_run_id"]), ("threshold", card["threshold"]["value"]),
                            ("decision", card["decision"]["verdict"]),
                            ("fairness", "passed" if card["fairness"]["passed"] else "failed"))])
    data = [Component(type=ComponentType.DATA, name=d["table"], version=f"v{d['version']}",
                      bom_ref=data_ref(d["table"], d["version"])) for d in datasets]
    code = Component(type=ComponentType.APPLICATION, name="tidewater", version=card["code_version"],
                     bom_ref="code/tidewater", description="the code that built the training set, trained and validated")
    system, _, release = versions.get("platform", "unknown").partition("-")
    os_component = Component(type=ComponentType.OPERATING_SYSTEM, name=system, version=release or None,
                             bom_ref="environment/os")
    libraries = [Component(type=ComponentType.LIBRARY, name=name, version=version,
                           purl=PackageURL(type="pypi", name=name.lower().replace("_", "-"), version=version),
                           bom_ref=f"pkg:pypi/{name.lower()}@{version}")
                 for name, version in requirement_pins(requirements)]
    environment = Component(type=ComponentType.PLATFORM, name="training-environment",
                            version=f"python {versions.get('python', 'unknown')}", bom_ref="environment/training",
                            description="the Python environment the model was trained in",
                            properties=[Property(name=f"tidewater:{k}", value=str(v)) for k, v in sorted(versions.items())])
    bom = Bom()
    bom.metadata.component = subject
    for component in [*data, code, environment, os_component, *libraries]:
        bom.components.add(component)
    bom.register_dependency(subject, [*data, code, environment])
    bom.register_dependency(environment, [os_component, *libraries])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"]["component"]["modelCard"] = _model_card_block(card, datasets)
    by_ref = {data_ref(d["table"], d["version"]): d for d in datasets}
    for component in document["components"]:
        if component["type"] == "data":
            component["data"] = _data_block(by_ref[component["bom-ref"]])
    check(document)
    return document


def check(document: dict) -> None:
    """Raise BomInvalid unless `document` validates against the bundled CycloneDX 1.6 JSON schema (strict)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    if error is not None:
        raise BomInvalid(f"the ML-BOM does not validate against CycloneDX {SPEC_VERSION}: {error.data.message}",
                         hint="a bug in training/ml_bom.py: no alias was moved for this version")
