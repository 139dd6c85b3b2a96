"""Containers and Kubernetes, on paper (no Docker engine here): the files name things that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from lakehouse.config import PROJECT_DIR
from lakehouse.job_runner import installed_jobs
from services.cli import services
from services.stack import ORDER

DEPLOY = PROJECT_DIR / "deploy"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    lines = re.sub(r"\\\n\s*", " ", dockerfile.read_text()).splitlines()
    return [tuple(line.split(None, 1)) for line in lines if line.strip() and not line.startswith("#")]


def _make_knows(target: str) -> bool:
    """make itself says whether the Makefile has a rule for `target` (a dry run executes nothing)."""
    done = subprocess.run(["make", "-n", "-C", str(PROJECT_DIR), target], capture_output=True, text=True)
    return "No rule to make target" not in done.stderr


def test_each_dockerfile_copies_files_that_exist_and_builds_with_make_targets_that_exist():
    for dockerfile in (DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.train"):
        steps = _instructions(dockerfile)
        assert steps[0][0] == "FROM"
        copied = [arg.split()[:-1] for op, arg in steps if op == "COPY"]
        for sources in copied:
            for source in sources:
                assert (PROJECT_DIR / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
        for op, arg in steps:
            if op == "RUN" and arg.startswith("make "):
                for target in arg.split()[1:]:
                    assert _make_knows(target), f"{dockerfile.name}: make target {target} is not in the Makefile"


def test_the_kubernetes_manifests_run_services_and_jobs_that_exist():
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "services.yaml").read_text()) if d]
    commands = set(services.commands)
    ran = []
    for doc in docs:
        assert doc["metadata"]["namespace"] == "tidewater"
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            args = container.get("args") or []
            if args[:1] == ["services"]:
                assert args[1] in commands and args[2] in ORDER, args
                ran.append(args[2])
            for var in container.get("env", []):
                assert "value" not in var or "PASSWORD" not in var["name"] or "valueFrom" in var  # secrets by reference
    assert {"sql", "mlflow"} <= set(ran)
    services_named = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert {"metastore", "sql", "mlflow", "redis", "api"} <= services_named

    script = DEPLOY / "k8s" / "spark-submit.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "local:///opt/tidewater/jobs/${JOB}.py" in script.read_text()
    assert {p.stem for p in (PROJECT_DIR / "jobs").glob("*.py")} == set(installed_jobs())


LOAD_WITH_DAGBAG = """
import json, sys
from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": {d: {"max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
                               "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "command": t.bash_command}
                                         for t in dag.tasks}} for d, dag in bag.dags.items()}}))
"""


def test_the_generated_airflow_dag_loads_in_airflows_own_dagbag(tmp_path):
    """Given the shipped schedules, when `services airflow-dag` writes the DAG file, then Airflow (in its own
    environment) loads one DAG per schedule, a task per job, ordered by what each job reads and writes."""
    from conftest import tidewater_in_process
    from lakehouse.config import load_config

    dags = tmp_path / "dags"
    result = tidewater_in_process(["services", "airflow-dag", "--out", str(dags / "tidewater_dags.py")])
    assert result.returncode == 0, result.stderr
    airflow_python = PROJECT_DIR / ".venv-airflow" / "bin" / "python"
    assert airflow_python.exists(), "`make setup` builds .venv-airflow"
    done = subprocess.run([str(airflow_python), "-c", LOAD_WITH_DAGBAG, str(dags)], capture_output=True, text=True,
                          env={"AIRFLOW_HOME": str(tmp_path / "airflow-home"), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    bag = json.loads(done.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    schedules = load_config().services.scheduler.schedules
    assert set(bag["dags"]) == {f"tidewater_{s.name}" for s in schedules}
    pipeline = bag["dags"]["tidewater_pipeline"]
    assert pipeline["max_active_runs"] == 1 and pipeline["catchup"] is False  # runs never overlap
    tasks = pipeline["tasks"]
    assert list(tasks) == next(s.jobs for s in schedules if s.name == "pipeline")
    assert tasks["ingest_bronze"]["upstream"] == []
    assert tasks["refine_silver"]["upstream"] == ["ingest_bronze"]
    assert tasks["build_gold"]["upstream"] == ["refine_silver"]
    assert "compute_features" in tasks["materialize_online"]["upstream"]
    for job, task in tasks.items():
        assert "spark-submit --master " in task["command"] and f" jobs/{job}.py --env local " in task["command"]
        assert (PROJECT_DIR / "jobs" / f"{job}.py").exists()
