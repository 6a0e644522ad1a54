"""The deployment spec (deploy.yaml): defaults, validation with the bad key's path, round trip."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from modelscale.config import DEFAULT_LATENCY_BUCKETS_MS, DeploymentSpec, load_deployment
from modelscale.errors import InvalidInput


@pytest.fixture
def model_file(tmp_path: pathlib.Path) -> pathlib.Path:
    p = tmp_path / "digits.onnx"
    p.write_bytes(b"onnx")
    return p


def write(tmp_path: pathlib.Path, data: object) -> pathlib.Path:
    p = tmp_path / "deploy.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_minimal_spec_gets_documented_defaults(tmp_path, model_file) -> None:
    spec = load_deployment(
        write(tmp_path, {"models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}}}})
    )
    m = spec.models["digits"]
    assert m.versions["1"].path == model_file.resolve()  # relative to the YAML file
    assert m.versions["1"].weight == 1.0
    assert (m.replicas, m.threads) == (1, 1)
    assert (m.max_batch, m.max_wait_ms, m.batching.max_queue, m.adaptive) == (8, 5.0, 256, False)
    assert m.slo.p99_ms is None
    assert (spec.server.host, spec.server.port) == ("127.0.0.1", 8000)
    assert spec.server.latency_buckets_ms == DEFAULT_LATENCY_BUCKETS_MS
    assert 100.0 in DEFAULT_LATENCY_BUCKETS_MS and 50.0 in DEFAULT_LATENCY_BUCKETS_MS
    assert spec.auth.api_key_file is None and spec.store.url is None


def test_full_spec_round_trips_through_yaml(tmp_path, model_file) -> None:
    key = tmp_path / "key.txt"
    key.write_text("abc\n")
    data = {
        "models": {
            "digits": {
                "versions": {
                    "1": {"path": str(model_file), "weight": 9},
                    "2": {"path": str(model_file), "weight": 1},
                },
                "batching": {"max_batch": 16, "max_wait_ms": 2, "max_queue": 512},
                "replicas": 2,
                "threads": 1,
                "slo": {"p99_ms": 100, "target_rps": 250},
            }
        },
        "server": {
            "host": "0.0.0.0",
            "port": 9000,
            "drain_timeout_s": 5,
            "latency_buckets_ms": [10, 100, 1000],
        },
        "auth": {"api_key_file": "key.txt"},
        "store": {"url": "sqlite:///x.db"},
    }
    spec = load_deployment(write(tmp_path, data))
    again = DeploymentSpec.from_dict(yaml.safe_load(spec.to_yaml()))
    assert again == spec
    assert spec.auth.api_key_file == key.resolve()
    assert spec.models["digits"].slo.target_rps == 250


def test_single_builds_the_spec_of_one_file(model_file) -> None:
    spec = DeploymentSpec.single(model_file, replicas=3, max_batch=4, p99_ms=50, port=0)
    assert list(spec.models) == ["digits"]
    m = spec.models["digits"]
    assert (m.replicas, m.batching.max_batch, m.slo.p99_ms, spec.server.port) == (3, 4, 50, 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "models: required key is missing"),
        ({"models": {}}, "models: "),
        (
            {"models": {"digits": {"versions": {"1": {"path": "missing.onnx"}}}}},
            "models.digits.versions.1.path: file does not exist",
        ),
        (
            {"models": {"digits": {"versions": {"1": {"path": "."}}}}},
            "models.digits.versions.1.path: is a directory",
        ),
        ({"models": {"digits": {"versions": {}}}}, "models.digits.versions: "),
        (
            {"models": {"digits": {"versions": {"1": {"path": "digits.onnx", "weight": -1}}}}},
            "models.digits.versions.1.weight: ",
        ),
        (
            {"models": {"digits": {"versions": {"1": {"path": "digits.onnx", "weight": 0}}}}},
            "at least one version needs a weight > 0",
        ),
        (
            {
                "models": {
                    "digits": {
                        "versions": {"1": {"path": "digits.onnx"}},
                        "batching": {"max_bach": 4},
                    }
                }
            },
            "models.digits.batching.max_bach: unknown key",
        ),
        (
            {
                "models": {
                    "digits": {
                        "versions": {"1": {"path": "digits.onnx"}},
                        "batching": {"max_batch": 0},
                    }
                }
            },
            "models.digits.batching.max_batch: ",
        ),
        (
            {"models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}, "replicas": "two"}}},
            "models.digits.replicas: ",
        ),
        (
            {
                "models": {
                    "digits": {"versions": {"1": {"path": "digits.onnx"}}, "slo": {"p99_ms": 0}}
                }
            },
            "models.digits.slo.p99_ms: ",
        ),
        (
            {
                "models": {
                    "digits": {"versions": {"1": {"path": "digits.onnx"}}, "slo": {"p99_ms": -5}}
                }
            },
            "models.digits.slo.p99_ms: ",
        ),
        (
            {
                "models": {
                    "digits": {
                        "versions": {"1": {"path": "digits.onnx"}},
                        "batching": {"adaptive": "sometimes"},
                    }
                }
            },
            "models.digits.batching.adaptive: ",
        ),
        ({"models": {"di/gits": {"versions": {"1": {"path": "digits.onnx"}}}}}, "URL-safe"),
        (
            {"models": {"digits": {"versions": {"v 1": {"path": "digits.onnx"}}}}},
            "version label 'v 1'",
        ),
        (
            {
                "models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}}},
                "server": {"port": 70000},
            },
            "server.port: ",
        ),
        (
            {
                "models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}}},
                "server": {"latency_buckets_ms": [5, 1]},
            },
            "server.latency_buckets_ms: ",
        ),
        (
            {
                "models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}}},
                "auth": {"api_key_file": "nokey.txt"},
            },
            "auth.api_key_file: file does not exist",
        ),
        (
            {"models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}}}, "extra": 1},
            "extra: unknown key",
        ),
        (["models"], "expected a mapping"),
    ],
)
def test_errors_name_the_bad_key_path(tmp_path, model_file, data, message) -> None:
    with pytest.raises(InvalidInput) as info:
        load_deployment(write(tmp_path, data))
    assert message in str(info.value)
    assert str(tmp_path / "deploy.yaml") in str(info.value)


def test_empty_key_file_is_rejected(tmp_path, model_file) -> None:
    (tmp_path / "key.txt").write_text("  \n")
    data = {
        "models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}}},
        "auth": {"api_key_file": "key.txt"},
    }
    with pytest.raises(InvalidInput, match=r"auth\.api_key_file: file is empty"):
        load_deployment(write(tmp_path, data))


def test_unreadable_yaml_files(tmp_path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_deployment(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_deployment(bad)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("server", "max_header_kb", 0),
        ("server", "max_header_kb", "big"),
        ("server", "header_timeout_s", -1),
        ("server", "body_timeout_s", 0),
        ("server", "idle_timeout_s", 0),
        ("server", "body_memory_mb", 0),
        ("model", "watchdog_s", 0),
        ("model", "watchdog_s", 7200),
    ],
)
def test_connection_and_watchdog_limits_must_be_positive(
    tmp_path, model_file, section, key, value
) -> None:
    data: dict = {"models": {"digits": {"versions": {"1": {"path": "digits.onnx"}}}}}
    if section == "server":
        data["server"] = {key: value}
        path = f"server.{key}: "
    else:
        data["models"]["digits"][key] = value
        path = f"models.digits.{key}: "
    with pytest.raises(InvalidInput) as info:
        load_deployment(write(tmp_path, data))
    assert path in str(info.value)


def _experiment(tmp_path: pathlib.Path, **experiment: object) -> DeploymentSpec:
    return load_deployment(
        write(
            tmp_path,
            {
                "models": {
                    "digits": {
                        "versions": {
                            "1": {"path": "digits.onnx"},
                            "2": {"path": "digits.onnx", "weight": 0},
                        },
                        "experiment": {"arms": {"control": "1", "treatment": "2"}, **experiment},
                    }
                }
            },
        )
    )


def test_an_experiment_gets_the_defaults_of_its_kind(tmp_path, model_file) -> None:
    canary = _experiment(tmp_path, kind="canary").models["digits"].experiment
    assert canary is not None
    assert [g.metric for g in canary.guardrail_specs()] == ["errors", "latency", "p99", "agreement"]
    assert canary.ramp == (1, 5, 25, 50, 100) and canary.unit == "request"
    ab = _experiment(tmp_path, kind="ab", metrics=["click", {"name": "revenue"}]).models["digits"]
    assert ab.experiment is not None and ab.experiment.treatment_share() == 0.5
    assert [m.name for m in ab.experiment.outcome_metrics()] == ["click", "revenue"]
    assert [g.metric for g in ab.experiment.guardrail_specs()] == ["errors", "latency"]
    shadow = _experiment(tmp_path, kind="shadow").models["digits"].experiment
    assert shadow is not None and shadow.guardrail_specs() == []


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        (
            {"kind": "ab", "arms": {"control": "1", "treatment": "3"}},
            "experiment.arms.treatment names version '3', which is not served; the versions "
            "are 1, 2",
        ),
        ({"kind": "ab", "arms": {"a": "1", "b": "2"}}, "exactly the arms control and treatment"),
        ({"kind": "ab", "arms": {"control": "1", "treatment": "1"}}, "both version '1'"),
        ({"kind": "ab", "split": {"control": 50, "treatment": 40}}, "split must sum to 100"),
        ({"kind": "ab", "split": {"control": 100, "treatment": 0}}, "gives an arm 0%"),
        ({"kind": "canary", "split": {"control": 50, "treatment": 50}}, "split is for kind ab"),
        ({"kind": "canary", "ramp": [5, 1, 100]}, "must rise strictly"),
        ({"kind": "canary", "ramp": [5, 50]}, "must end at 100"),
        ({"kind": "ab", "unit": "cookie:id"}, "'request', 'header:NAME' or 'parameter:NAME'"),
        ({"kind": "ab", "guardrails": ["clicks"]}, "guardrail 'clicks' is not a metric"),
        ({"kind": "ab", "metrics": ["click", "click"]}, "metrics are named twice"),
        ({"kind": "ab", "alpha": 0.7}, "experiment.alpha"),
        ({"kind": "blue-green"}, "experiment.kind"),
        ({"kind": "ab", "shadow": {"sample": 0}}, "experiment.shadow.sample"),
        ({"kind": "ab", "sequential": "forever"}, "experiment.sequential"),
        ({"kind": "canary", "compare": []}, "must list output names"),
    ],
)
def test_experiment_errors_name_the_problem(tmp_path, model_file, experiment, message) -> None:
    arms = experiment.pop("arms", {"control": "1", "treatment": "2"})
    with pytest.raises(InvalidInput) as info:
        _experiment(tmp_path, arms=arms, **experiment)
    assert message in str(info.value)


def test_batching_defaults_follow_the_latency_objective(model_file) -> None:
    fixed = DeploymentSpec.single(model_file).models[model_file.stem]
    assert (fixed.max_batch, fixed.max_wait_ms, fixed.adaptive) == (8, 5.0, False)
    slo = DeploymentSpec.single(model_file, p99_ms=100).models[model_file.stem]
    # With an objective the batch is chosen per dispatch: 64 rows and no wait bound are limits.
    assert (slo.max_batch, slo.max_wait_ms, slo.adaptive) == (64, None, True)
    bounded = DeploymentSpec.single(model_file, p99_ms=100, max_batch=16, max_wait_ms=3)
    m = bounded.models[model_file.stem]
    assert (m.max_batch, m.max_wait_ms, m.adaptive) == (16, 3.0, True)
    # A batch of one row at most leaves nothing to choose; adaptive: false keeps the settings.
    one = DeploymentSpec.single(model_file, p99_ms=100, max_batch=1).models[model_file.stem]
    assert (one.max_batch, one.adaptive) == (1, False)
    data = DeploymentSpec.single(model_file, p99_ms=100).model_dump(mode="json")
    data["models"][model_file.stem]["batching"]["adaptive"] = False
    off = DeploymentSpec.from_dict(data).models[model_file.stem]
    assert (off.max_batch, off.max_wait_ms, off.adaptive) == (8, 5.0, False)
