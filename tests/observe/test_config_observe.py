"""deploy.yaml's log, SLO and alerts sections refuse bad values, naming the key."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput


def _spec(mlp_path: pathlib.Path, slo: dict[str, Any] | None = None, **top: Any) -> DeploymentSpec:
    model: dict[str, Any] = {"versions": {"1": {"path": str(mlp_path)}}}
    if slo is not None:
        model["slo"] = slo
    return DeploymentSpec.from_dict({"models": {"mlp": model}, **top})


@pytest.mark.parametrize(
    ("slo", "top", "message"),
    [
        (
            {"availability": 1.0},
            {},
            "models.mlp.slo.availability: must be a fraction strictly between 0 and 1",
        ),
        ({"availability": 0}, {}, "models.mlp.slo.availability: must be a fraction"),
        (
            {"latency": {"threshold_ms": 100, "objective": 1.5}},
            {},
            "models.mlp.slo.latency.objective",
        ),
        ({"latency": {"threshold_ms": -1}}, {}, "models.mlp.slo.latency.threshold_ms"),
        (
            {"latency": {"objective": 0.9}},
            {},
            "models.mlp.slo.latency.threshold_ms: required key is missing",
        ),
        ({"availabilty": 0.99}, {}, "models.mlp.slo.availabilty: unknown key"),
        (
            {"latency": {"p99_ms": 10, "p50_ms": 5}},
            {},
            "models.mlp.slo.latency.p50_ms: unknown key",
        ),
        ({"window_days": 0}, {}, "models.mlp.slo.window_days"),
        ({"min_events": 0}, {}, "models.mlp.slo.min_events"),
        (
            None,
            {"alerts": {"webhooks": ["ftp://example.com/hook"]}},
            "alerts.webhooks: 'ftp://example.com/hook' is not an http(s) URL",
        ),
        (None, {"alerts": {"webhooks": ["http:///nohost"]}}, "is not an http(s) URL"),
        (None, {"alerts": {"retries": -1}}, "alerts.retries"),
        (None, {"log": {"sample": 1.5}}, "log.sample"),
        (None, {"log": {"flush_s": 0}}, "log.flush_s"),
        (None, {"log": {"payloads": "sometimes"}}, "log.payloads"),
        (None, {"log": {"dir": "/tmp"}}, "log.dir: unknown key"),
    ],
)
def test_bad_values_name_the_key(
    mlp_path: pathlib.Path, slo: dict[str, Any] | None, top: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        _spec(mlp_path, slo, **top)
    assert message in str(err.value)


def test_objectives_and_aliases(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    spec = _spec(
        mlp_path,
        {"availability": 0.999, "latency": {"p99_ms": 100}},
        log={"path": "rel/logs"},
    )
    slo = spec.models["mlp"].slo
    assert slo.objectives() == {"availability": 0.999, "latency": 0.99}
    assert slo.latency is not None and slo.latency.threshold_ms == 100
    assert spec.log.path == str(pathlib.Path.cwd() / "rel" / "logs")
    assert _spec(mlp_path, log={"path": "s3://bucket/x"}).log.path == "s3://bucket/x"
    again = DeploymentSpec.from_dict(spec.model_dump(mode="json"))  # a round trip (Ray's args)
    assert again == spec
    del tmp_path
