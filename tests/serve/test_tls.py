"""HTTPS: end to end over a real socket with a self-signed certificate for 127.0.0.1 and scoped
keys, and the TLS settings' checks."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pathlib
import re
import signal
import ssl
import subprocess
import sys
import threading

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.secret import create_secret
from modelscale.serve import start_server
from modelscale.serve.keys import create_key, pepper_of
from modelscale.serve.runner import check_tls

BODY = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}]}


def self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A certificate for 127.0.0.1 signed by its own key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _trusting(cert: pathlib.Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@pytest.mark.e2e
def test_a_server_with_tls_answers_https_only_and_checks_keys(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    cert, key_file = self_signed(tmp_path)
    keys = tmp_path / "keys.json"
    _, key = create_key(
        keys, name="web", scopes=["infer"], pepper=pepper_of(create_secret(tmp_path / "secret"))
    )
    spec = DeploymentSpec.from_dict(
        {
            "models": {"mlp": {"versions": {"1": {"path": str(mlp_path)}}}},
            "server": {"tls_cert": str(cert), "tls_key": str(key_file)},
            "auth": {"keys_file": str(keys)},
            "log": {"enabled": False},
        }
    )
    with start_server(spec) as server:
        assert server.url.startswith("https://127.0.0.1:")
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, verify=_trusting(cert)) as c:
            assert c.get("/v2/health/ready").status_code == 200
            r = c.post("/v2/models/mlp/infer", json=BODY, headers=auth)
            assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 4]
            assert c.post("/v2/models/mlp/infer", json=BODY).status_code == 401
            assert c.get("/metrics", headers=auth).status_code == 403
        with (
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
            httpx.Client(base_url=server.url) as untrusting,
        ):
            untrusting.get("/v2/health/live")  # the system's CAs do not know this certificate
        plain = server.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError), httpx.Client(base_url=plain) as c:
            c.get("/v2/health/live", timeout=5)


@pytest.mark.e2e
def test_serve_prints_an_https_url_for_tls_flags(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    cert, key_file = self_signed(tmp_path)
    cmd = [
        sys.executable,
        "-c",
        "import modelscale.cli as c; c.main()",
        "serve",
        str(mlp_path),
        "--port",
        "0",
        "--name",
        "mlp",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key_file),
        "--no-request-log",
        "--no-store",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)
    try:
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                lines.append(raw.decode())
                if "Ready:" in lines[-1]:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(120), "".join(lines)
        found = re.search(r"Ready: (https://\S+)/v2", "".join(lines))
        assert found is not None, "".join(lines)
        with httpx.Client(base_url=found.group(1), verify=_trusting(cert)) as c:
            r = c.post("/v2/models/mlp/infer", json=BODY)
            assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tls_needs_both_files_and_they_must_exist(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    cert, key_file = self_signed(tmp_path)
    model = {"mlp": {"versions": {"1": {"path": str(mlp_path)}}}}
    with pytest.raises(InvalidInput, match="'tls_cert' and 'tls_key' go together"):
        DeploymentSpec.from_dict({"models": model, "server": {"tls_cert": str(cert)}})
    with pytest.raises(InvalidInput, match="'tls_cert' and 'tls_key' go together"):
        DeploymentSpec.from_dict({"models": model, "server": {"tls_key": str(key_file)}})
    with pytest.raises(InvalidInput, match=r"server\.tls_key: file does not exist"):
        DeploymentSpec.from_dict(
            {"models": model, "server": {"tls_cert": str(cert), "tls_key": "nope.pem"}}
        )
    spec = DeploymentSpec.from_dict(
        {"models": model, "server": {"tls_cert": "cert.pem", "tls_key": "key.pem"}},
        base_dir=tmp_path,
    )
    assert spec.server.tls_cert == cert.resolve() and spec.server.tls_key == key_file.resolve()
    check_tls(spec)
    (tmp_path / "other").mkdir()
    other_cert, _ = self_signed(tmp_path / "other")
    mismatched = DeploymentSpec.from_dict(
        {"models": model, "server": {"tls_cert": str(other_cert), "tls_key": str(key_file)}}
    )
    with pytest.raises(InvalidInput, match="do not load as a certificate and its private key"):
        check_tls(mismatched)
    key_file.write_text("not a key")
    with pytest.raises(InvalidInput, match=r"server\.tls_key \(.*\) do not load"):
        check_tls(spec)
