"""API keys: everything but health needs the bearer key; wrong or missing keys get 401."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.serve.auth import read_api_key
from modelscale.serve.stages import AuthStage
from tests.serve.conftest import app_client, infer_body

KEY = "s3cret-key-0123456789"


@pytest.fixture(scope="module")
def client(mlp_path, tmp_path_factory) -> Iterator[TestClient]:
    key_file = tmp_path_factory.mktemp("auth") / "key.txt"
    key_file.write_text(KEY + "\n")
    spec = DeploymentSpec.single(mlp_path, name="mlp", api_key_file=key_file)
    with app_client(spec, api_key=read_api_key(key_file)) as c:
        yield c


def test_health_endpoints_need_no_key(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize("path", ["/v2", "/v2/models/mlp", "/v2/models/mlp/ready", "/metrics"])
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", f"Basic {KEY}", KEY, "Bearer", f"Bearer {KEY}x", f"bearer {KEY[:-1]}"],
)
def test_everything_else_is_401_without_the_right_key(
    client: TestClient, path: str, header
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.json()["field"] == "Authorization"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_inference_with_the_key(client: TestClient) -> None:
    x = np.zeros((1, 16), dtype=np.float32)
    assert client.post("/v2/models/mlp/infer", json=infer_body(x)).status_code == 401
    ok = client.post(
        "/v2/models/mlp/infer", json=infer_body(x), headers={"Authorization": f"Bearer {KEY}"}
    )
    assert ok.status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"bearer {KEY}"}).status_code == 200


def test_keys_are_compared_as_digests_in_constant_time(monkeypatch) -> None:
    import hmac

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = AuthStage(KEY)
    assert auth.allowed(f"Bearer {KEY}".encode())
    assert not auth.allowed(b"Bearer x")
    assert not auth.allowed(b"Token " + KEY.encode())  # a wrong scheme is still compared
    assert calls == [(32, 32)] * 3  # equal-length digests: the key's length does not leak


def test_key_files_must_hold_a_key(tmp_path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(InvalidInput, match="empty"):
        read_api_key(empty)
    with pytest.raises(InvalidInput, match="Cannot read"):
        read_api_key(tmp_path / "missing.txt")
    (tmp_path / "k.txt").write_text("  abc  \nsecond line\n")
    assert read_api_key(tmp_path / "k.txt") == "abc"
