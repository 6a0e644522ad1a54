"""Several models and versions: version routes, weighted traffic split, per-version metadata."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec
from modelscale.model import ModelArtifact
from modelscale.serve.registry import ModelEntry
from tests.onnx_models import save_mlp
from tests.serve.conftest import app_client, infer_body


@pytest.fixture(scope="module")
def client(mlp_path, tmp_path_factory) -> Iterator[TestClient]:
    other = save_mlp(tmp_path_factory.mktemp("v2") / "mlp2.onnx", d_hidden=8)
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "mlp": {
                    "versions": {
                        "1": {"path": str(mlp_path), "weight": 3},
                        "2": {"path": str(other), "weight": 1},
                    },
                    "batching": {"max_batch": 4, "max_wait_ms": 1},
                }
            }
        }
    )
    with app_client(spec) as c:
        c.other_sha = ModelArtifact.load(other).sha256  # type: ignore[attr-defined]
        yield c


def test_each_version_has_its_own_metadata_and_sha256(client: TestClient, mlp_path) -> None:
    v1 = client.get("/v2/models/mlp/versions/1").json()
    v2 = client.get("/v2/models/mlp/versions/2").json()
    assert v1["versions"] == ["1", "2"]
    assert v1["parameters"]["sha256"] == ModelArtifact.load(mlp_path).sha256
    assert v2["parameters"]["sha256"] == client.other_sha  # type: ignore[attr-defined]
    assert client.get("/v2/models/mlp").json()["parameters"]["version"] == "1"  # highest weight


def test_versioned_requests_go_to_that_version(client: TestClient) -> None:
    x = np.ones((1, 16), dtype=np.float32)
    r = client.post("/v2/models/mlp/versions/2/infer", json=infer_body(x))
    assert r.status_code == 200 and r.json()["model_version"] == "2"


def test_unversioned_requests_follow_the_weights(client: TestClient) -> None:
    x = np.ones((1, 16), dtype=np.float32)
    versions = Counter(
        client.post("/v2/models/mlp/infer", json=infer_body(x)).json()["model_version"]
        for _ in range(40)
    )
    assert versions == Counter({"1": 30, "2": 10})


def test_smooth_weighted_round_robin_interleaves() -> None:
    entry = ModelEntry("m", {"a": "A", "b": "B", "z": "Z"}, {"a": 2.0, "b": 1.0, "z": 0.0}, "a")  # type: ignore[dict-item]
    picks = [entry.pick() for _ in range(6)]
    assert picks == ["A", "B", "A", "A", "B", "A"]  # never the zero-weight version
