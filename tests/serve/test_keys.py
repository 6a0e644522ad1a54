"""Scoped API keys: the key store, and who may use which route of a whole server.

The access matrix runs every route a server with the request log, monitoring and an experiment
answers against a key of each scope and every kind of bad key. Keys made or revoked while the
server runs take effect without a restart.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import pathlib
import stat
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec, get_settings
from modelscale.errors import InvalidInput
from modelscale.secret import FileModeWarning, create_secret
from modelscale.serve.auth import Authenticator, key_id, load_authenticator
from modelscale.serve.features import Route
from modelscale.serve.front import build_front
from modelscale.serve.keys import (
    SCOPES,
    KeyStore,
    create_key,
    hash_key,
    parse_key_id,
    pepper_of,
    read_keys,
    revoke_key,
)
from tests.experiment.models import D_IN, save_classifier

PEPPER = pepper_of(bytes(range(32)))


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(path: pathlib.Path, clock: Clock | None = None, **kw: Any) -> KeyStore:
    return KeyStore(path, pepper=PEPPER, clock=clock or Clock(), **kw)


# -- keys and the keys file -------------------------------------------------------------------


def test_a_key_is_msk_id_secret_and_only_its_peppered_hash_is_stored(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "keys.json"
    entry, key = create_key(path, name="web", scopes=["feedback", "infer", "infer"], pepper=PEPPER)
    prefix, kid, secret = key.split("_", 2)
    assert prefix == "msk" and kid == entry.id and len(kid) == 8 and int(kid, 16) >= 0
    assert len(secret) == 43  # 32 bytes, base64url without padding
    assert entry.scopes == ("infer", "feedback")  # repeats dropped, in SCOPES order
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert key not in text and secret not in text
    stored = json.loads(text)
    assert stored["version"] == 1 and len(stored["keys"]) == 1
    assert stored["keys"][0]["hash"] == hmac.new(PEPPER, key.encode(), "sha256").hexdigest()
    assert stored["keys"][0]["hash"] == hash_key(PEPPER, key)
    assert stored["keys"][0]["revoked_at"] is None
    assert parse_key_id(key.encode()) == entry.id


@pytest.mark.parametrize(
    "token",
    [b"", b"msk_", b"msk_0123abcd", b"msk_0123abcd_", b"msk_0123ABCD_x", b"msk_0123abc_xx",
     b"xsk_0123abcd_x", b"msk-0123abcd-x", b"msk_0123abcdxx"],
)  # fmt: skip
def test_malformed_keys_have_no_id(token: bytes) -> None:
    assert parse_key_id(token) is None


def test_the_store_knows_active_keys_only_and_fails_every_other_key_alike(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "keys.json"
    good, key = create_key(path, name="a", scopes=["infer"], pepper=PEPPER)
    gone, old = create_key(path, name="b", scopes=["admin"], pepper=PEPPER)
    revoke_key(path, gone.id)
    store = _store(path)
    assert store.verify(key.encode()) == good
    assert [k.id for k in store.keys] == [good.id]
    unknown = f"msk_{'0' * 8 if good.id != '0' * 8 else '1' * 8}_{key.split('_', 2)[2]}"
    for token in (old, key[:-1] + ("A" if key[-1] != "A" else "B"), unknown, "msk_zz", key + "x"):
        assert store.verify(token.encode()) is None, token


def test_every_check_is_one_constant_time_compare_even_for_unknown_ids(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.json"
    _, key = create_key(path, name="a", scopes=["infer"], pepper=PEPPER)
    gone, old = create_key(path, name="b", scopes=["infer"], pepper=PEPPER)
    revoke_key(path, gone.id)
    store = _store(path)
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tokens = [key, "wrong", "msk_ffffffff_" + "x" * 43, old, key[:-2]]
    results = [store.verify(t.encode()) for t in tokens]
    assert [r is not None for r in results] == [True, False, False, False, False]
    # One comparison each, of equal-length digests: known, malformed, unknown, revoked, wrong.
    assert calls == [(32, 32)] * len(tokens)
    calls.clear()
    auth = Authenticator(api_key="single-key", store=store)
    assert auth.identify(b"Bearer single-key").id == key_id("single-key")  # type: ignore[union-attr]
    assert auth.identify(b"Basic single-key") is None  # a wrong scheme is still compared
    assert calls == [(32, 32)] * 4  # both kinds of key, every time


def test_a_key_made_or_revoked_counts_after_the_next_check_at_most_a_second_later(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.json"
    create_key(path, name="first", scopes=["infer"], pepper=PEPPER)
    clock = Clock()
    store = _store(path, clock)
    stats = []
    real_stat = os.stat

    def counting_stat(p: Any, *a: Any, **kw: Any) -> os.stat_result:
        if str(p) == str(path):
            stats.append(p)
        return real_stat(p, *a, **kw)

    monkeypatch.setattr(os, "stat", counting_stat)
    entry, key = create_key(path, name="second", scopes=["infer"], pepper=PEPPER)
    assert store.verify(key.encode()) is None  # not checked yet: within the second
    clock.now += 0.5
    assert store.verify(key.encode()) is None
    assert stats == []  # no stat within the second, however many requests
    clock.now += 0.5
    assert store.verify(key.encode()) == entry
    assert len(stats) == 1
    for _ in range(10):
        store.verify(key.encode())
    assert len(stats) == 1
    revoke_key(path, entry.id)
    clock.now += 1
    assert store.verify(key.encode()) is None


def test_a_broken_keys_file_keeps_the_last_good_keys_and_is_logged_once(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    entry, key = create_key(path, name="a", scopes=["infer"], pepper=PEPPER)
    clock = Clock()
    store = _store(path, clock)
    good = path.read_bytes()
    path.write_bytes(good[:-20])  # half-written by hand
    path.chmod(0o600)
    with caplog.at_level(logging.ERROR, logger="modelscale.serve"):
        for _ in range(3):
            clock.now += 1
            assert store.verify(key.encode()) == entry
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot be used" in errors[0].getMessage()
    assert "not valid JSON" in errors[0].getMessage()
    path.unlink()  # gone: the keys stay, logged once
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="modelscale.serve"):
        for _ in range(3):
            clock.now += 1
            assert store.verify(key.encode()) == entry
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    path.write_bytes(good)  # back: read again
    revoke_key(path, entry.id)
    clock.now += 1
    assert store.verify(key.encode()) is None


def test_a_keys_file_made_with_another_secret_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, name="a", scopes=["infer"], pepper=PEPPER)
    other = pepper_of(b"\7" * 32)
    with pytest.raises(InvalidInput, match="made with another secret"):
        KeyStore(path, pepper=other)
    with pytest.raises(InvalidInput, match="made with another secret"):
        create_key(path, name="b", scopes=["infer"], pepper=other)
    assert len(read_keys(path).keys) == 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_keys_file_others_can_read_is_warned_about(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, name="a", scopes=["infer"], pepper=PEPPER)
    path.chmod(0o640)
    with pytest.warns(FileModeWarning, match=f"chmod 600 {path}"):
        _store(path)
    path.chmod(0o600)
    _store(path)  # no warning (warnings are errors here)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[]", 'an object with a "keys" list'),
        ('{"version": 2, "keys": []}', "version 2"),
        ('{"keys": [{"id": "x"}]}', r"keys\[0\]\.id"),
        ('{"keys": [{"id": "0123abcd", "name": "a", "hash": "' + "0" * 64 + '", '
         '"created_at": "t", "revoked_at": null, "scopes": ["root"]}]}', r"keys\[0\]\.scopes"),
    ],
)  # fmt: skip
def test_a_bad_keys_file_is_refused_naming_the_problem(
    tmp_path: pathlib.Path, content: str, match: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=match):
        read_keys(path)
    with pytest.raises(InvalidInput, match=match):
        create_key(path, name="a", scopes=["infer"], pepper=PEPPER)
    assert path.read_text() == content  # left as it was


def test_routes_name_known_scopes_and_default_to_admin() -> None:
    async def handler(ex: Any) -> None:
        return None

    assert Route(handler).scope_for("GET") == "admin"
    mixed = Route(handler, methods=("GET", "POST"), scope={"GET": "logs:read"})
    assert mixed.scope_for("HEAD") == "logs:read" and mixed.scope_for("POST") == "admin"
    with pytest.raises(InvalidInput, match="'read' is not a scope; expected one of infer"):
        Route(handler, scope="read")


# -- configuration ----------------------------------------------------------------------------


def _single(mlp_path: pathlib.Path, **sections: Any) -> DeploymentSpec:
    data: dict[str, Any] = {"models": {"mlp": {"versions": {"1": {"path": str(mlp_path)}}}}}
    data.update(sections)
    return DeploymentSpec.from_dict(data)


def test_a_keys_file_needs_the_server_secret(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "conf" / "keys.json"
    secret = tmp_path / "elsewhere" / "secret"
    _, key = create_key(keys, name="a", scopes=["infer"], pepper=pepper_of(create_secret(secret)))
    spec = _single(mlp_path, auth={"keys_file": str(keys)})
    with pytest.raises(InvalidInput, match=r"server\.secret_file.*modelscale keys create") as info:
        load_authenticator(spec)
    assert info.value.field == "server.secret_file"
    # The secret from MODELSCALE_SECRET_FILE, from server.secret_file, or beside the keys file.
    monkeypatch.setenv("MODELSCALE_SECRET_FILE", str(secret))
    get_settings.cache_clear()
    auth = load_authenticator(spec)
    assert auth is not None and auth.identify(f"Bearer {key}".encode()) is not None
    monkeypatch.delenv("MODELSCALE_SECRET_FILE")
    get_settings.cache_clear()
    with_setting = _single(
        mlp_path, auth={"keys_file": str(keys)}, server={"secret_file": str(secret)}
    )
    auth = load_authenticator(with_setting)
    assert auth is not None and auth.identify(f"Bearer {key}".encode()) is not None
    secret.rename(keys.parent / "secret")
    auth = load_authenticator(spec)
    assert auth is not None and auth.identify(f"Bearer {key}".encode()) is not None


def test_keys_files_and_secrets_that_do_not_exist_fail_at_load(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(InvalidInput, match=r"auth\.keys_file: file does not exist.*keys create"):
        _single(mlp_path, auth={"keys_file": "nope.json"})
    with pytest.raises(InvalidInput, match=r"server\.secret_file: file does not exist"):
        _single(mlp_path, server={"secret_file": "nope"})
    # A spec for other machines is not checked here.
    spec = DeploymentSpec.from_dict(
        {
            "models": {"mlp": {"versions": {"1": {"path": "/x/m.onnx"}}}},
            "auth": {"keys_file": "keys.json"},
            "server": {"secret_file": "secret"},
        },
        base_dir=tmp_path,
        check_files=False,
    )
    assert spec.auth.keys_file == tmp_path / "keys.json"
    assert spec.server.secret_file == tmp_path / "secret"


def test_both_kinds_of_key_may_be_given_together(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    secret = create_secret(tmp_path / "secret")
    keys = tmp_path / "keys.json"
    _, scoped = create_key(keys, name="a", scopes=["infer"], pepper=pepper_of(secret))
    single = tmp_path / "key.txt"
    single.write_text("the-old-single-key\n")
    spec = _single(mlp_path, auth={"keys_file": str(keys), "api_key_file": str(single)})
    auth = load_authenticator(spec)
    assert auth is not None
    old = auth.identify(b"Bearer the-old-single-key")
    assert old is not None and old.id == key_id("the-old-single-key")
    assert old.allows("admin") and all(old.allows(s) for s in SCOPES)
    new = auth.identify(f"Bearer {scoped}".encode())
    assert new is not None and new.allows("infer") and not new.allows("logs:read")
    assert load_authenticator(_single(mlp_path)) is None  # no keys: open


# -- the access matrix over a whole server ----------------------------------------------------

OPEN = "open"
ANY = "any key"
EXPECTED = {
    ("GET", "/v2/health/live"): OPEN,
    ("GET", "/v2/health/ready"): OPEN,
    ("GET", "/dashboard"): OPEN,
    ("GET", "/dashboard/"): OPEN,
    ("GET", "/v2"): "infer",
    ("GET", "/v2/models/clf"): "infer",
    ("GET", "/v2/models/clf/ready"): "infer",
    ("GET", "/v2/models/clf/versions/2"): "infer",
    ("POST", "/v2/models/clf/infer"): "infer",
    ("POST", "/v2/models/clf/versions/2/infer"): "infer",
    ("GET", "/metrics"): "logs:read",
    ("GET", "/v2/logs"): "logs:read",
    ("GET", "/v2/observe/live"): "logs:read",
    ("GET", "/v2/monitor"): "logs:read",
    ("GET", "/v2/experiments"): "logs:read",
    ("GET", "/v2/models/clf/experiment"): "logs:read",
    ("POST", "/v2/models/clf/experiment"): "admin",
    ("POST", "/v2/models/clf/feedback"): "feedback",
    ("POST", "/v2/models/clf/outcome"): "feedback",
    ("GET", "/v2/nothing-here"): ANY,
    ("GET", "/v2/models/clf/infer"): ANY,
}
"""What each route needs; every route the server answers must be here or declare a scope."""

CALLERS = ("none", "wrong", "malformed", "unknown", "revoked", *SCOPES)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A server with the request log, monitoring and an A/B experiment, behind scoped keys."""
    tmp = tmp_path_factory.mktemp("keys-server")
    control = save_classifier(tmp / "control.onnx")
    treatment = save_classifier(tmp / "treatment.onnx", nudge=1e-4)
    secret = create_secret(tmp / "secret")
    keys = tmp / "keys.json"
    tokens = {}
    for scope in SCOPES:
        _, tokens[scope] = create_key(keys, name=scope, scopes=[scope], pepper=pepper_of(secret))
    gone, tokens["revoked"] = create_key(
        keys, name="old", scopes=["admin"], pepper=pepper_of(secret)
    )
    revoke_key(keys, gone.id)
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "clf": {
                    "versions": {
                        "1": {"path": str(control)},
                        "2": {"path": str(treatment), "weight": 0},
                    },
                    "batching": {"max_batch": 8, "max_wait_ms": 1},
                    "experiment": {"kind": "ab", "arms": {"control": "1", "treatment": "2"}},
                }
            },
            "log": {"path": str(tmp / "logs")},
            "store": {"url": f"sqlite:///{tmp / 'kb.db'}"},
            "auth": {"keys_file": str(keys)},
        }
    )
    auth = load_authenticator(spec)
    assert auth is not None
    tokens["wrong"] = tokens["admin"][:-3] + (
        "abc" if not tokens["admin"].endswith("abc") else "xyz"
    )
    tokens["malformed"] = "not-a-modelscale-key"
    admin_id = parse_key_id(tokens["admin"].encode())
    other = "0" * 8 if admin_id != "0" * 8 else "1" * 8
    tokens["unknown"] = tokens["admin"].replace(f"msk_{admin_id}_", f"msk_{other}_")
    front = build_front(spec, auth=auth, manage_registry=True)
    with TestClient(front) as client:
        client.front = front  # type: ignore[attr-defined]
        yield client, tokens


def _routes(front: Any) -> dict[tuple[str, str], str]:
    """Every (method, path) the server answers -> what it needs: EXPECTED plus every feature
    route, with the scope it declares (so that a route added later is in the matrix too)."""
    out = dict(EXPECTED)
    for path, route in front.routes.items():
        for method in route.methods:
            out.setdefault((method, path), OPEN if route.public else route.scope_for(method))
    for tail, route in front.model_routes.items():
        for method in route.methods:
            out.setdefault((method, f"/v2/models/clf/{tail}"), route.scope_for(method))
    return out


def _request(client: TestClient, method: str, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if method == "GET":
        return client.get(path, headers=headers)
    body: dict[str, Any] = {"action": "not-an-action"}  # passes auth, then 400: nothing changes
    if path.endswith("/infer"):
        x = np.zeros((1, D_IN), dtype=np.float32)
        body = {"inputs": [{"name": "x", "shape": [1, D_IN], "datatype": "FP32",
                            "data": x.ravel().tolist()}]}  # fmt: skip
    return client.post(path, json=body, headers=headers)


def test_every_route_the_server_answers_has_its_scope_in_the_matrix(server: Any) -> None:
    client, _ = server
    front = client.front
    declared = {p: OPEN if r.public else r.scope_for(m) for p, r in front.routes.items()
                for m in r.methods}  # fmt: skip
    for (method, path), needs in EXPECTED.items():
        if path in front.routes:
            assert declared[path] == needs, (method, path)
        tail = path.rsplit("/", 1)[-1]
        if path.startswith("/v2/models/clf/") and tail in front.model_routes:
            assert front.model_routes[tail].scope_for(method) == needs, (method, path)
    # The features this server runs are all there.
    assert {"/v2/logs", "/v2/monitor", "/v2/experiments"} <= set(front.routes)
    assert {"feedback", "outcome", "experiment"} <= set(front.model_routes)


def _cases() -> list[tuple[str, str, str]]:
    return [(m, p, c) for (m, p) in EXPECTED for c in CALLERS]


@pytest.mark.parametrize(("method", "path", "caller"), _cases())
def test_access_matrix(server: Any, method: str, path: str, caller: str) -> None:
    client, tokens = server
    needs = _routes(client.front)[(method, path)]
    r = _request(client, method, path, tokens.get(caller))
    if needs == OPEN:
        assert r.status_code == 200, r.text
        return
    if caller not in SCOPES:
        assert r.status_code == 401, r.text
        assert r.content == (
            b'{"error":"missing or wrong API key; send the header Authorization: Bearer <key>",'
            b'"field":"Authorization"}'
        )  # the same body for every kind of bad key: it tells nothing
        assert r.headers["www-authenticate"] == 'Bearer realm="modelscale"'
        return
    if needs == ANY or caller == "admin" or caller == needs:
        assert r.status_code not in (401, 403), r.text
        return
    assert r.status_code == 403, r.text
    assert f"needs the scope {needs!r}" in r.json()["error"]


def test_routes_other_features_add_follow_their_declared_scope(server: Any) -> None:
    client, tokens = server
    for (method, path), needs in _routes(client.front).items():
        if (method, path) in EXPECTED or needs == OPEN:
            continue
        for caller in SCOPES:
            r = _request(client, method, path, tokens[caller])
            allowed = caller in ("admin", needs)
            assert (r.status_code != 403) == allowed, (method, path, caller, r.text)


def test_head_needs_what_get_needs(server: Any) -> None:
    client, tokens = server
    auth = {"Authorization": f"Bearer {tokens['infer']}"}
    assert client.head("/v2/logs", headers=auth).status_code == 403
    assert client.head("/v2/models/clf", headers=auth).status_code == 200


def test_the_key_id_is_what_requests_carry_never_the_key(server: Any) -> None:
    client, tokens = server
    r = client.post(
        "/v2/models/clf/experiment",
        json={"action": "nope"},
        headers={"Authorization": f"Bearer {tokens['logs:read']}"},
    )
    assert r.status_code == 403
    key_ids = parse_key_id(tokens["logs:read"].encode())
    assert key_ids in r.json()["error"]
    assert tokens["logs:read"] not in r.text


# -- keys made and revoked while the server runs ----------------------------------------------


def test_keys_made_and_revoked_while_serving_take_effect_without_a_restart(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    secret = create_secret(tmp_path / "secret")
    pepper = pepper_of(secret)
    keys = tmp_path / "keys.json"
    create_key(keys, name="first", scopes=["infer"], pepper=pepper)
    spec = DeploymentSpec.from_dict(
        {
            "models": {"mlp": {"versions": {"1": {"path": str(mlp_path)}}}},
            "auth": {"keys_file": str(keys)},
            "log": {"enabled": False},
        }
    )
    clock = Clock()
    store = KeyStore(keys, pepper=pepper, clock=clock)
    front = build_front(spec, auth=Authenticator(store=store), manage_registry=True, features=[])
    with TestClient(front) as client:
        entry, key = create_key(keys, name="new", scopes=["infer"], pepper=pepper)
        auth = {"Authorization": f"Bearer {key}"}
        clock.now += 1
        assert client.get("/v2/models/mlp", headers=auth).status_code == 200
        assert client.get("/metrics", headers=auth).status_code == 403
        revoke_key(keys, entry.id)
        clock.now += 1
        r = client.get("/v2/models/mlp", headers=auth)
        assert r.status_code == 401
