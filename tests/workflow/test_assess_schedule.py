"""Scheduling assess: a crontab line and a Kubernetes CronJob that run it against a baseline."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from modelscale.errors import InvalidInput
from modelscale.workflow.assess_schedule import (
    check_out_path,
    check_schedule,
    cron_line,
    emit_schedule,
)


def test_a_cron_line_runs_assess_against_the_baseline_here(tmp_path: pathlib.Path) -> None:
    model = tmp_path / "clf 50%.onnx"
    text = cron_line(model=model, baseline_run_id=7, schedule="0 3 * * *", eval_path=None)
    comment, line = text.strip().splitlines()[0], text.strip().splitlines()[-1]
    assert comment.startswith("#")
    assert line.startswith("0 3 * * * cd ")
    assert " assess " in line and "--baseline 7" in line
    assert "50\\%" in line  # cron ends a command at an unescaped %
    assert "MODELSCALE_DB=" in line  # the same knowledge base, whatever the job's directory


def test_a_cron_line_leaves_out_a_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelscale.config import get_settings

    monkeypatch.setenv("MODELSCALE_DB", "postgresql://me:secret@db/kb")
    get_settings.cache_clear()
    text = cron_line(model=pathlib.Path("m.onnx"), baseline_run_id=1, schedule="@daily")
    assert "secret" not in text and "set MODELSCALE_DB" in text


def test_a_cronjob_runs_the_image_s_model_with_the_db_from_a_secret(tmp_path: pathlib.Path) -> None:
    path = emit_schedule(
        "k8s", model=tmp_path / "digits.onnx", name="Digits v2", baseline_run_id=12,
        schedule="30 2 * * 1", eval_path=tmp_path / "eval.npz", out=tmp_path / "job.yaml",
        image="registry/modelscale:1",
    )  # fmt: skip
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "CronJob" and doc["metadata"]["name"] == "assess-digits-v2"
    spec = doc["spec"]
    assert spec["schedule"] == "30 2 * * 1" and spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    (c,) = job["template"]["spec"]["containers"]
    assert c["image"] == "registry/modelscale:1"
    assert c["command"] == [
        "modelscale", "assess", "/models/digits.onnx", "--baseline", "12",
        "--eval", "/models/eval.npz",
    ]  # fmt: skip
    assert c["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "modelscale-db", "key": "url"}
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert "&id" not in path.read_text()  # plain YAML, no anchors


@pytest.mark.parametrize("schedule", ["every day", "0 3 * *", "0 3 * * * *", "@sometimes", ""])
def test_a_bad_schedule_is_refused(schedule: str) -> None:
    with pytest.raises(InvalidInput, match="The 'schedule' parameter of assess must be"):
        check_schedule(schedule)


def test_an_unwritable_out_path_is_refused_before_any_work(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        check_out_path("cron", tmp_path / "missing" / "job.cron")
    with pytest.raises(InvalidInput, match="it is a folder"):
        check_out_path("k8s", tmp_path)
    assert check_out_path("cron", tmp_path / "job.cron") == tmp_path / "job.cron"
