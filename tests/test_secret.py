"""The server secret: made once (0600, never overwritten), read back, keys derived per purpose."""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import stat

import pytest

from modelscale.errors import InvalidInput
from modelscale.secret import (
    SECRET_BYTES,
    FileModeWarning,
    check_private,
    create_secret,
    derive,
    read_secret,
)


def test_a_secret_is_made_private_read_back_and_never_overwritten(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "conf" / "secret"
    secret = create_secret(path)
    assert len(secret) == SECRET_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == secret.hex() + "\n"
    assert read_secret(path) == secret
    check_private(path, what="The secret")  # 0600: no warning (warnings are errors here)
    with pytest.raises(InvalidInput, match="exists already; it is never overwritten"):
        create_secret(path)
    assert read_secret(path) == secret
    assert create_secret(tmp_path / "other") != secret


def test_derived_keys_are_hmac_of_the_purpose_and_differ_by_purpose() -> None:
    secret = bytes(range(32))
    assert derive(secret, "api-keys") == hmac.new(secret, b"api-keys", hashlib.sha256).digest()
    assert derive(secret, "api-keys") != derive(secret, "privacy-hash")
    assert len(derive(secret, "privacy-hash")) == 32
    with pytest.raises(InvalidInput, match="purpose"):
        derive(secret, "")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("abc\n", "at least 32 bytes as hex"),
        ("zz" * 32, "at least 32 bytes as hex"),
        ("00" * 16, "at least 32 bytes as hex"),
    ],
)
def test_a_secret_file_that_is_not_32_hex_bytes_is_refused(
    tmp_path: pathlib.Path, text: str, match: str
) -> None:
    path = tmp_path / "secret"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match) as info:
        read_secret(path)
    assert info.value.field == "secret_file"


def test_a_missing_secret_says_how_to_make_one(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInput, match=r"does not exist.*modelscale keys create"):
        read_secret(tmp_path / "nothing")


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_file_others_can_read_is_warned_about_with_the_fix(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "secret"
    create_secret(path)
    path.chmod(0o644)
    with pytest.warns(FileModeWarning, match=f"mode 0644.*chmod 600 {path}"):
        check_private(path, what="The server secret file")
    path.chmod(0o600)
    check_private(path, what="The server secret file")
    check_private(tmp_path / "missing", what="x")  # nothing to say about a missing file
