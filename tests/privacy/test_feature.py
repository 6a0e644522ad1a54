"""The privacy stages in a real front: policies before storage, payloads redacted, bad policies."""

from __future__ import annotations

import pathlib
import socket

import orjson
import pyarrow.parquet as pq
import pytest

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.privacy.detect import Detector
from modelscale.privacy.policy import DROP, Redactor, mask
from modelscale.secret import create_secret
from modelscale.serve.front import build_front
from tests.serve.conftest import app_client
from tests.serve.test_text import save_token_model, save_tokenizer

EMAIL = "maria.rossi@example.org"
CARD = "4111 1111 1111 1111"
PHONE = "+44 20 7946 0958"


def spec_of(tmp_path: pathlib.Path, policy: dict, **extra: object) -> DeploymentSpec:
    tok = save_tokenizer(tmp_path / "tokenizer.json")
    model = save_token_model(tmp_path / "tokens.onnx")
    data: dict = {
        "models": {
            "enc": {
                "versions": {"1": {"path": str(model)}},
                "batching": {"max_batch": 8, "max_wait_ms": 1},
                "text": {"tokenizer": str(tok)},
                "privacy": policy,
            }
        },
        "log": {"path": str(tmp_path / "log"), "payloads": True, "flush_s": 0.1},
        **extra,
    }
    return DeploymentSpec.from_dict(data)


def stored_text(root: pathlib.Path) -> str:
    """Everything under ``root`` as text: Parquet files decoded (they are compressed), others
    as raw bytes."""
    out = []
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        if f.suffix == ".parquet":
            out.append(str(pq.read_table(f).to_pylist()))
        else:
            out.append(f.read_bytes().decode("latin-1"))
    return "\n".join(out)


def test_nothing_unredacted_is_stored_and_policies_apply_before_features(tmp_path) -> None:
    secret = tmp_path / "secret"
    create_secret(secret)
    spec = spec_of(
        tmp_path,
        {"parameters": {"user": "hash", "note": "mask"}, "headers": {"x-user": "hash"}},
        server={"secret_file": str(secret)},
    )
    texts = [
        f"please call me at {PHONE} or write to {EMAIL}",
        f"my card is {CARD}, thanks",
        "the quick brown fox",
    ]
    with app_client(spec) as client:
        for i, text in enumerate(texts):
            r = client.post(
                "/v2/models/enc/infer",
                json={
                    "id": f"r{i}",
                    "parameters": {"user": EMAIL, "note": "secret-note-1234", "plain": EMAIL},
                    "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}],
                },
                headers={"X-User": EMAIL},
            )
            assert r.status_code == 200, r.text
        metrics = client.get("/metrics").text
    assert 'modelscale_privacy_findings_total{kind="EMAIL"}' in metrics
    stored = stored_text(tmp_path / "log")
    for raw in (EMAIL, CARD, PHONE, "4111111111111111", "secret-note"):
        assert raw not in stored
    payloads = [
        orjson.loads(row["payload"])
        for f in (tmp_path / "log" / "_payloads").rglob("*.parquet")
        for row in pq.read_table(f).to_pylist()
    ]
    assert len(payloads) == 3
    by_text = {p["inputs"]["text"][0]: p for p in payloads}
    assert "please call me at <PHONE> or write to <EMAIL>" in by_text
    assert "my card is <CREDIT_CARD>, thanks" in by_text
    assert "the quick brown fox" in by_text  # nothing found, nothing changed
    p = payloads[0]
    assert p["parameters"]["user"].startswith("hmac:")
    assert p["parameters"]["plain"] == p["parameters"]["user"]  # default: wholly PII -> hashed
    assert p["parameters"]["note"] == "************1234"
    assert p["headers"]["x-user"] == p["parameters"]["user"]  # equal values still join


def test_policy_errors_name_the_field(tmp_path) -> None:
    spec = spec_of(tmp_path, {"inputs": {"txt": "redact"}})
    with pytest.raises(InvalidInput, match=r"privacy\.inputs\.txt.*no input 'txt'"):
        build_front(spec)
    spec = spec_of(tmp_path, {"parameters": {"user": "hash"}})
    with pytest.raises(InvalidInput, match=r"server\.secret_file"):
        build_front(spec)
    with pytest.raises(InvalidInput, match="not a duration"):
        spec_of(tmp_path, {}, privacy={"retention": {"payloads": "a week"}})
    with pytest.raises(InvalidInput, match="keep"):
        spec_of(tmp_path, {"inputs": {"text": "shred"}})


def test_redactor_policies() -> None:
    r = Redactor(Detector(), b"k" * 32)
    assert mask("abcdefgh") == "****efgh" and mask("abc") == "***"
    assert r.apply("drop", "x") is DROP
    assert r.apply("keep", EMAIL) == EMAIL
    assert r.apply("hash", EMAIL) == r.apply(None, EMAIL)
    assert r.apply("redact", f"mail {EMAIL}") == "mail <EMAIL>"
    body = {"unit": EMAIL, "items": [{"unit": EMAIL, "note": f"from {EMAIL}", "value": 3}]}
    clean = r.fields({"note": "drop"}, body)
    assert clean == {
        "unit": r.hash(EMAIL),
        "items": [{"unit": r.hash(EMAIL), "value": 3}],
    }
    no_key = Redactor(Detector(), None)
    assert no_key.apply(None, EMAIL) == "<EMAIL>"


def test_redaction_runs_with_the_network_blocked(monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    r = Redactor(Detector(), None)
    assert r.apply("redact", f"call {PHONE}, mail {EMAIL}") == "call <PHONE>, mail <EMAIL>"


def test_hashed_units_still_join_their_outcomes(tmp_path) -> None:
    """An A/B test assigning by a `user` parameter the policy hashes: the experiment only ever
    sees the hash, and an outcome posted with the raw user id finds its unit (the body's `unit`
    is hashed the same way before the experiment reads it)."""
    import numpy as np

    from tests.experiment.models import save_classifier
    from tests.experiment.test_server import _body, _rows, _spec

    secret = tmp_path / "secret"
    create_secret(secret)
    base = _spec(
        tmp_path,
        save_classifier(tmp_path / "t.onnx", nudge=0.01),
        kind="ab",
        unit="parameter:user",
        metrics=["clicks"],
    ).model_dump(mode="json")
    base["models"]["clf"]["privacy"] = {"parameters": {"user": "hash"}}
    base["server"]["secret_file"] = str(secret)
    spec = DeploymentSpec.from_dict(base)
    rng = np.random.default_rng(0)
    users = [f"user{i}@example.org" for i in range(6)]
    with app_client(spec) as client:
        for user in users:
            r = client.post("/v2/models/clf/infer", json=_body(_rows(rng), user=user))
            assert r.status_code == 200, r.text
        for user in users:
            r = client.post(
                "/v2/models/clf/outcome", json={"unit": user, "metric": "clicks", "value": 1}
            )
            assert r.status_code == 200, r.text  # found: 404 would name an unknown unit
        r = client.post(
            "/v2/models/clf/outcome",
            json={"unit": "someone@example.org", "metric": "clicks", "value": 1},
        )
        assert r.status_code == 404
        assert "someone@example.org" not in r.text  # the error names the hash, never the id
        status = client.get("/v2/models/clf/experiment").text
    for user in users:
        assert user not in status
