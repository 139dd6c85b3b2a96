"""Every `tidewater` command the README shows works on the lakehouse the demo leaves behind.

Lines of ```bash blocks run for real (optional `[...]` parts dropped, placeholders filled from the
demo root); commands the prose names inline must exist: their `--help` runs. They run through the
`tidewater` command group in this process (the test session's Spark, as the demo's own jobs do): a
command's own start-up as a separate process is what tests/test_cli.py checks, once per kind.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import tidewater_in_process
from lakehouse.tables import read_table

PROJECT = Path(__file__).resolve().parent.parent
# Not run for real: the demo itself (the fixture ran it), a server, a background process, another cluster.
NOT_RUN = (re.compile(r"^tidewater demo\b"), re.compile(r"^tidewater mlflow-ui\b"),
           re.compile(r"^tidewater stream start\b"), re.compile(r"--env cluster"))
# Envs whose conf gives them a lakehouse of their own (conf/kafka.yaml: var/kafka): their lines run on a
# fresh root, as they would beside the demo's, and the servers they start are stopped afterwards.
OWN_ROOT = ("kafka",)


def readme_commands(text: str) -> tuple[list[str], list[str]]:
    """(commands in bash blocks, commands named inline in the prose)."""
    runnable, named, in_bash = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_bash = line.strip() == "```bash" and not in_bash
            continue
        if in_bash:
            if line.startswith("tidewater "):
                runnable.append(line.split("  #")[0].strip())
        else:
            named += re.findall(r"`(tidewater [^`]+)`", line)
    return runnable, named


def expand(command: str) -> list[str]:
    """Optional `[...]` parts dropped; `a|b|c` alternatives of one word expanded."""
    bare = re.sub(r"\s*\[[^\]]*\]", "", command).strip()
    words = shlex.split(bare)
    for i, word in enumerate(words):
        if "|" in word and not word.startswith("SELECT"):
            return [shlex.join([*words[:i], alt, *words[i + 1:]]) for alt in word.split("|")]
    return [shlex.join(words)]


def command_path(command: str) -> list[str]:
    """The subcommand words of a named command (up to its first option or placeholder)."""
    out = []
    for word in shlex.split(re.sub(r"\s*\[[^\]]*\]", "", command))[1:]:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z_-]*", word):
            break
        out.append(word)
    return out


def env_of(line: str) -> str | None:
    match = re.search(r"--env (\S+)", line)
    return match.group(1) if match else None


@pytest.mark.slow
def test_every_readme_command_runs_after_the_demo(spark, demo_lake, tmp_path):
    text = (PROJECT / "README.md").read_text()
    runnable, named = readme_commands(text)
    assert len(runnable) >= 15 and any("lineage --txn" in c for c in runnable)
    cfg = demo_lake.cfg
    placeholders = {"TXN_ID": read_table(spark, cfg.table("gold.predictions")).orderBy("txn_id").first()["txn_id"]}
    env = {"TIDEWATER_CONF_DIR": str(demo_lake.conf_dir), "TIDEWATER_ENV": demo_lake.env,
           "TIDEWATER_ROOT": str(demo_lake.root)}
    own_roots = {name: {**env, "TIDEWATER_ROOT": str(tmp_path / name)} for name in OWN_ROOT}
    failures = []
    try:
        for command in runnable:
            for line in expand(command):
                if any(p.search(line) for p in NOT_RUN):
                    continue
                for name, value in placeholders.items():
                    line = line.replace(name, value)
                done = tidewater_in_process(shlex.split(line)[1:], own_roots.get(env_of(line), env))
                if done.returncode != 0 or "Traceback" in done.stderr:
                    failures.append(f"{line}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    finally:
        for name, name_env in own_roots.items():
            tidewater_in_process(["services", "stop", "--env", name], name_env)
    for path in {tuple(command_path(c)) for c in named}:
        done = tidewater_in_process([*path, "--help"], env)
        if done.returncode != 0 or "Usage:" not in done.stdout:
            failures.append(f"tidewater {' '.join(path)} --help: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    assert not failures, "\n".join(failures)
