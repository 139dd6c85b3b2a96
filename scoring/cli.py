"""`tidewater stream start|status|stop` (added to the CLI by entry point)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import click

from lakehouse.cli import ENV_OPT, ROOT_OPT, one_line_errors
from lakehouse.pidfile import live_pid, write_pid


def _paths(env, root):
    from lakehouse.config import load_config
    from scoring.stream import stream_dir

    cfg = load_config(env, root)
    d = stream_dir(cfg)
    return cfg, d / "pid", d / "status.json", d / "stream.log"


@click.group()
def stream():
    """Run the streaming scorer (score_stream) in the background and watch it."""


@stream.command()
@click.option("--alias", default=None, help="Registry alias to score with (default: scoring.alias).")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def start(alias, root, env):
    """Start score_stream --continuous in the background (logs under <root>/streams/score_stream)."""
    from lakehouse.locks import exclusive

    cfg, pid_file, _, log_file = _paths(env, root)
    with exclusive(cfg, "stream_start", doing="starting the stream"):  # check and spawn as one step
        running = live_pid(pid_file)
        if running is not None:
            raise click.ClickException(f"already running (pid {running}); "
                                       "`tidewater stream stop` first")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lakehouse.cli", "run", "score_stream", "--continuous", "--root", str(cfg.root)]
        if env:
            cmd += ["--env", env]
        if alias:
            cmd += ["--alias", alias]
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        write_pid(pid_file, proc.pid)
    click.echo(f"score_stream started (pid {proc.pid}); log: {log_file}")


@stream.command()
@ROOT_OPT
@ENV_OPT
@one_line_errors
def status(root, env):
    """Is it running, which model, how many batches and rows so far (JSON)."""
    _, pid_file, status_file, log_file = _paths(env, root)
    pid = live_pid(pid_file)
    info = json.loads(status_file.read_text()) if status_file.exists() else {}
    info["running"] = pid is not None
    info["pid"] = pid
    info["log"] = str(log_file)
    click.echo(json.dumps(info, indent=1))


@stream.command()
@click.option("--timeout", default=60, show_default=True, help="Seconds to wait for a clean stop.")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def stop(timeout, root, env):
    """Stop it cleanly (SIGTERM: the current micro-batch finishes, the checkpoint is committed)."""
    _, pid_file, _, _ = _paths(env, root)
    pid = live_pid(pid_file)  # never a process that merely got a dead stream's pid
    if pid is None:
        click.echo("score_stream is not running")
        pid_file.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while live_pid(pid_file) == pid and time.time() < deadline:
        time.sleep(0.5)
    if live_pid(pid_file) == pid:
        os.kill(pid, signal.SIGKILL)
        click.echo(f"score_stream (pid {pid}) did not stop in {timeout}s: killed; the next start resumes "
                   "from the checkpoint")
    else:
        click.echo(f"score_stream (pid {pid}) stopped")
    pid_file.unlink(missing_ok=True)
