"""`modelscale keys create | list | revoke`, and what each says to bad input."""

from __future__ import annotations

import json
import os
import pathlib
import stat
from collections.abc import Callable
from typing import Any

import pytest

from modelscale.config import get_settings
from modelscale.secret import read_secret
from modelscale.serve.keys import KeyStore, pepper_of, read_keys
from modelscale.store import open_store
from tests.cli.helpers import invoke


@pytest.fixture()
def here(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The working directory: keys.json and secret land here by default."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELSCALE_SECRET_FILE", raising=False)
    get_settings.cache_clear()
    return tmp_path


@pytest.fixture()
def audited() -> Callable[[str], list[dict[str, Any]]]:
    """The details of the knowledge base's audit entries of one action (keys.create, ...)."""

    def entries(action: str) -> list[dict[str, Any]]:
        store = open_store()
        try:
            return [e.details for e in store.audit_entries() if e.action == action]
        finally:
            store.close()

    return entries


def _create(*args: str) -> dict[str, Any]:
    r = invoke("keys", "create", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_create_prints_the_key_once_and_makes_private_files(
    here: pathlib.Path, audited: Callable[[str], list[dict[str, Any]]]
) -> None:
    r = invoke("keys", "create", "web", "--scope", "infer", "-s", "feedback")
    assert r.exit_code == 0, r.output
    key = next(line for line in r.stdout.splitlines() if line.startswith("msk_"))
    assert "not shown again" in r.stdout
    assert "Made the server secret" in r.stderr
    for name in ("keys.json", "secret"):
        assert stat.S_IMODE((here / name).stat().st_mode) == 0o600
    assert key not in (here / "keys.json").read_text()
    store = KeyStore(here / "keys.json", pepper=pepper_of(read_secret(here / "secret")))
    found = store.verify(key.encode())
    assert found is not None and found.name == "web" and found.scopes == ("infer", "feedback")
    assert audited("keys.create") == [
        {"id": found.id, "name": "web", "scopes": ["infer", "feedback"]}
    ]
    # The second key uses the secret that is there.
    secret = (here / "secret").read_text()
    _create("ops", "--scope", "admin")
    assert (here / "secret").read_text() == secret
    assert "Made the server secret" not in invoke("keys", "create", "x", "-s", "infer").stderr


def test_list_shows_everything_but_keys_and_hashes(here: pathlib.Path) -> None:
    made = _create("web", "--scope", "infer")
    _create("web", "--scope", "logs:read")  # names may repeat: a successor before a revoke
    r = invoke("keys", "list")
    assert r.exit_code == 0, r.output
    assert made["id"] in r.stdout and "logs:read" in r.stdout and "web" in r.stdout
    assert made["key"] not in r.stdout
    listed = json.loads(invoke("keys", "list", "--json").stdout)["keys"]
    assert [k["name"] for k in listed] == ["web", "web"]
    assert set(listed[0]) == {"id", "name", "scopes", "created_at", "revoked_at"}
    hashes = [k.hash for k in read_keys(here / "keys.json").keys]
    assert not any(h in r.stdout for h in hashes)


def test_revoke_marks_the_key_and_says_so_twice_without_failing(
    here: pathlib.Path, audited: Callable[[str], list[dict[str, Any]]]
) -> None:
    made = _create("web", "--scope", "infer")
    r = invoke("keys", "revoke", made["id"])
    assert r.exit_code == 0, r.output
    assert f"Revoked key {made['id']}" in r.stdout
    assert audited("keys.revoke") == [{"id": made["id"], "name": "web"}]
    again = invoke("keys", "revoke", made["id"], "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False
    assert len(audited("keys.revoke")) == 1  # nothing changed, nothing to audit
    listed = json.loads(invoke("keys", "list", "--json").stdout)["keys"]
    assert listed[0]["revoked_at"] is not None


def test_the_files_can_live_elsewhere(
    tmp_path: pathlib.Path, here: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "etc" / "keys.json"
    made = _create("a", "-s", "infer", "--keys-file", str(keys))
    assert (keys.parent / "secret").is_file()  # beside the keys file by default
    secret = tmp_path / "vault" / "server.secret"
    monkeypatch.setenv("MODELSCALE_SECRET_FILE", str(secret))
    get_settings.cache_clear()
    other = tmp_path / "other.json"
    _create("b", "-s", "infer", "--keys-file", str(other))
    assert secret.is_file() and not (tmp_path / "secret").exists()
    explicit = tmp_path / "explicit.secret"
    _create("c", "-s", "infer", "--keys-file", str(tmp_path / "third.json"), "--secret-file",
            str(explicit))  # fmt: skip
    assert explicit.is_file()
    r = invoke("keys", "list", "--keys-file", str(keys), "--json")
    assert [k["id"] for k in json.loads(r.stdout)["keys"]] == [made["id"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "web", "--scope", "root"), "Unknown scope 'root'; expected one or more of "
         "infer, feedback, logs:read, admin"),
        (("create", "web"), "at least one scope, one of infer, feedback, logs:read, admin"),
        (("create", " ", "--scope", "infer"), "name must be 1 to 100 printable characters"),
        (("revoke", "deadbeef"), "No key with id 'deadbeef'"),
        (("list",), "does not exist. Make a key with `modelscale keys create"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    here: pathlib.Path, args: tuple[str, ...], message: str
) -> None:
    if args[0] == "revoke":
        _create("web", "--scope", "infer")
    before = (here / "keys.json").read_bytes() if (here / "keys.json").exists() else None
    r = invoke("keys", *args)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.stderr.split())
    assert "Traceback" not in r.output
    after = (here / "keys.json").read_bytes() if (here / "keys.json").exists() else None
    assert after == before


def test_a_keys_file_that_is_not_json_is_named_and_left_alone(here: pathlib.Path) -> None:
    (here / "keys.json").write_text("{not json")
    (here / "keys.json").chmod(0o600)
    for args in (("create", "web", "-s", "infer"), ("list",), ("revoke", "0123abcd")):
        r = invoke("keys", *args)
        assert r.exit_code == 2, r.output
        assert "is not a modelscale keys file: not valid JSON" in " ".join(r.stderr.split())
        assert (here / "keys.json").read_text() == "{not json"


def test_a_secret_that_does_not_match_the_keys_file_is_refused(
    here: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    _create("web", "--scope", "infer")
    other = tmp_path / "other-secret"
    r = invoke("keys", "create", "x", "-s", "infer", "--secret-file", str(other))
    assert r.exit_code == 2
    assert "made with another secret" in " ".join(r.stderr.split())
    assert len(read_keys(here / "keys.json").keys) == 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_files_others_can_read_are_warned_about_with_the_fix(here: pathlib.Path) -> None:
    _create("web", "--scope", "infer")
    (here / "keys.json").chmod(0o644)
    r = invoke("keys", "list")
    assert r.exit_code == 0, r.output
    assert "Warning:" in r.stderr and "chmod 600 keys.json" in " ".join(r.stderr.split())
    (here / "secret").chmod(0o640)
    r = invoke("keys", "create", "x", "-s", "infer")
    assert r.exit_code == 0, r.output
    assert "chmod 600 secret" in " ".join(r.stderr.split())
