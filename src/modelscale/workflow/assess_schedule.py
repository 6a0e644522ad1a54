"""Run an assessment on a schedule: a crontab line, or a Kubernetes CronJob.

``emit_schedule("cron", ...)`` writes one crontab line that runs ``modelscale assess MODEL
--baseline RUN`` in this working directory against this knowledge base; ``emit_schedule("k8s",
...)`` writes a CronJob manifest whose container runs the same command, the model and eval set
baked into the image under ``/models`` and the knowledge base URL taken from a Secret. The exit
status is the verdict (0 nothing regressed, 1 a regression), so the scheduler's failed-job alerts
are the regression alerts; a CronJob therefore never retries a failed job.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import shlex
import shutil
import sys
from typing import Any, Literal

import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from modelscale.config import get_settings
from modelscale.errors import InvalidInput, invalid_parameter

__all__ = [
    "CONTAINER_DIR",
    "DB_SECRET",
    "ScheduleKind",
    "check_out_path",
    "check_schedule",
    "cron_line",
    "cronjob_manifest",
    "emit_schedule",
]

ScheduleKind = Literal["cron", "k8s"]

CONTAINER_DIR = "/models"
"""Where the CronJob's image holds the model and the eval set."""

DB_SECRET = ("modelscale-db", "url")
"""The Secret (name, key) the CronJob reads the knowledge base URL from."""

_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_FIELD = re.compile(r"^[0-9A-Za-z*/,?-]+$")
_DEFAULT_OUT = {"cron": "modelscale-assess.cron", "k8s": "assess-cronjob.yaml"}


def check_schedule(schedule: str) -> str:
    """``schedule`` if it reads as a cron schedule: five fields, or a macro such as @daily."""
    text = " ".join(str(schedule).split())
    fields = text.split(" ")
    if text in _MACROS or (len(fields) == 5 and all(_FIELD.match(f) for f in fields)):
        return text
    raise invalid_parameter(
        "schedule",
        "a cron schedule of five fields (minute hour day month weekday, e.g. '0 3 * * *') or "
        "one of @hourly, @daily, @weekly, @monthly",
        schedule,
        where="assess",
    )


def check_out_path(kind: ScheduleKind, out: str | os.PathLike[str] | None) -> pathlib.Path:
    """Where ``emit_schedule`` will write (default: a file named for ``kind`` here), checked now
    so that an unwritable path fails before the assessment, not after it."""
    path = pathlib.Path(out if out is not None else _DEFAULT_OUT[kind]).expanduser()
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    why = None
    if path.is_dir():
        why = "it is a folder"
    elif path.exists() and not os.access(path, os.W_OK):
        why = "the file is not writable"
    elif not path.exists() and not folder.is_dir():
        why = f"the folder {folder} does not exist"
    elif not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        why = f"the folder {folder} is not writable"
    if why:
        raise InvalidInput(
            f"The 'out' parameter of assess must be a file path that can be written. Got "
            f"{str(path)!r} instead: {why}.",
            field="out",
        )
    return path


def _db_url() -> tuple[str | None, bool]:
    """The knowledge base URL to put in the job, and whether it was left out (a password)."""
    url = get_settings().db
    try:
        has_password = make_url(url).password is not None
    except ArgumentError:
        has_password = False
    return (None, True) if has_password else (url, False)


def _version() -> str:
    try:
        return importlib.metadata.version("modelscale")
    except importlib.metadata.PackageNotFoundError:
        return "latest"


def _executable() -> str:
    beside = pathlib.Path(sys.executable).with_name("modelscale")
    return str(beside) if beside.exists() else shutil.which("modelscale") or "modelscale"


def cron_line(
    *,
    model: pathlib.Path,
    baseline_run_id: int,
    schedule: str,
    eval_path: pathlib.Path | None = None,
    log: pathlib.Path | None = None,
) -> str:
    """The crontab entry (with a comment above it) that assesses ``model`` on ``schedule``."""
    cwd = pathlib.Path.cwd()
    log = log or cwd / ".modelscale" / "assess.log"
    args = [_executable(), "assess", str(model.resolve()), "--baseline", str(baseline_run_id)]
    if eval_path is not None:
        args += ["--eval", str(eval_path.resolve())]
    url, hidden = _db_url()
    env = f"MODELSCALE_DB={shlex.quote(url)} " if url else ""
    command = (
        f"cd {shlex.quote(str(cwd))} && {env}{shlex.join(args)} >> {shlex.quote(str(log))} 2>&1"
    )
    note = (
        "# The knowledge base URL holds a password and is left out: set MODELSCALE_DB in the\n"
        "# crontab's environment.\n"
        if hidden
        else ""
    )
    # cron reads an unescaped % as the end of the command.
    return (
        f"# modelscale assess {model.name} against run {baseline_run_id}; exit status 1 = a "
        f"regression. Install with: (crontab -l; cat FILE) | crontab -\n{note}"
        f"{check_schedule(schedule)} {command.replace('%', chr(92) + '%')}\n"
    )


def _k8s_name(name: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return f"assess-{out or 'model'}"[:52].rstrip("-")


def cronjob_manifest(
    *,
    model: pathlib.Path,
    name: str,
    baseline_run_id: int,
    schedule: str,
    eval_path: pathlib.Path | None = None,
    image: str = "modelscale:0.1.0",
    cpus: int = 2,
) -> dict[str, Any]:
    """A ``batch/v1`` CronJob that assesses the model baked into ``image`` on ``schedule``.

    It asks for whole, guaranteed CPUs (requests = limits): a measurement that shares its cores
    with other pods measures them too.
    """
    command = [
        "modelscale", "assess", f"{CONTAINER_DIR}/{model.name}",
        "--baseline", str(baseline_run_id),
    ]  # fmt: skip
    if eval_path is not None:
        command += ["--eval", f"{CONTAINER_DIR}/{eval_path.name}"]
    secret, key = DB_SECRET
    cpu = {"cpu": str(cpus), "memory": "2Gi"}
    container = {
        "name": "assess",
        "image": image,
        "command": command,
        "env": [
            {"name": "MODELSCALE_DB", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        ],
        "resources": {"requests": dict(cpu), "limits": dict(cpu)},  # no YAML anchors
    }
    job = {
        # Exit status 1 is a finding (a regression), not a failure to retry.
        "backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
    }
    labels = {"app.kubernetes.io/name": "modelscale", "app.kubernetes.io/component": "assess"}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": _k8s_name(name), "labels": labels},
        "spec": {
            "schedule": check_schedule(schedule),
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {"spec": job},
        },
    }


def emit_schedule(
    kind: ScheduleKind,
    *,
    model: pathlib.Path,
    name: str,
    baseline_run_id: int,
    schedule: str = "0 3 * * *",
    eval_path: pathlib.Path | None = None,
    out: str | os.PathLike[str] | None = None,
    image: str | None = None,
) -> pathlib.Path:
    """Write a crontab line (``cron``) or a CronJob manifest (``k8s``); return the file's path."""
    if kind not in _DEFAULT_OUT:
        raise invalid_parameter("emit", "'cron' or 'k8s'", kind, where="assess")
    path = check_out_path(kind, out)
    if kind == "cron":
        text = cron_line(
            model=model, baseline_run_id=baseline_run_id, schedule=schedule, eval_path=eval_path
        )
    else:
        doc = cronjob_manifest(
            model=model, name=name, baseline_run_id=baseline_run_id, schedule=schedule,
            eval_path=eval_path, image=image or f"modelscale:{_version()}",
        )  # fmt: skip
        text = (
            f"# modelscale assess {model.name} against run {baseline_run_id}. The image holds "
            f"{model.name}" + (f" and {eval_path.name}" if eval_path else "") + f" in "
            f"{CONTAINER_DIR}; the Secret {DB_SECRET[0]} holds the knowledge base URL "
            f"(key {DB_SECRET[1]}).\n" + yaml.safe_dump(doc, sort_keys=False)
        )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"The 'out' parameter of assess must be a file path that can be written. Got "
            f"{str(path)!r} instead: {exc.strerror or exc}.",
            field="out",
        ) from exc
    return path.resolve()
