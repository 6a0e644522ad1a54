"""`modelscale serve`: bad input exits 2 with one line; a real server drains and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest
import yaml

import modelscale.cli.serve  # noqa: F401  (registers the command)
from modelscale.serve.runner import bind_socket
from modelscale.store import open_store
from tests.cli.helpers import invoke


def _yaml(tmp_path: pathlib.Path, data: dict) -> pathlib.Path:
    p = tmp_path / "deploy.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Nothing to serve"),
        (("missing.onnx",), "does not exist"),
        (("{mlp}", "-c", "{yaml}"), "either MODEL or -c"),
        (("-c", "{yaml}", "--replicas", "2"), "--replicas cannot be combined with -c"),
        (
            (
                "-c",
                "{bad_yaml}",
            ),
            "models.mlp.batching.max_bach: unknown key",
        ),
        (("-c", "nothere.yaml"), "does not exist"),
        (("{mlp}", "--log-level", "loud"), "--log-level must be one of"),
        (("{mlp}", "--api-key-file", "nokey.txt"), "auth.api_key_file: file does not exist"),
        (("{not_onnx}",), "not a valid ONNX model"),
        (("{mlp}", "--name", "bad/name"), "URL-safe"),
        (("{mlp}", "--tokenizer", "nothere.json"), "text.tokenizer: file does not exist"),
        (("-c", "{yaml}", "--tokenizer", "{yaml}"), "--tokenizer cannot be combined with -c"),
        (("{mlp}", "--port", "0", "--tokenizer", "{not_onnx}"), "not a tokenizers tokenizer.json"),
        (
            ("{mlp}", "--port", "0", "--log-dir", "{not_onnx}/logs"),
            "log.path: cannot write the request log",
        ),
        (
            ("{mlp}", "--port", "0", "--log-dir", "nosuchscheme://x"),
            "cannot open 'nosuchscheme://x'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, mlp_path, args, message) -> None:
    not_onnx = tmp_path / "x.onnx"
    not_onnx.write_bytes(b"\x00garbage")
    names = {
        "mlp": str(mlp_path),
        "yaml": str(
            _yaml(tmp_path, {"models": {"mlp": {"versions": {"1": {"path": str(mlp_path)}}}}})
        ),
        "bad_yaml": str(
            _yaml(
                tmp_path / "..",
                {
                    "models": {
                        "mlp": {
                            "versions": {"1": {"path": str(mlp_path)}},
                            "batching": {"max_bach": 2},
                        }
                    }
                },
            )
        ),
        "not_onnx": str(not_onnx),
    }
    result = invoke("serve", *(a.format(**names) for a in args), "--no-store")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "option",
    [
        ("--replicas", "0"),
        ("--threads", "0"),
        ("--max-batch", "0"),
        ("--port", "70000"),
        ("--max-wait-ms", "-1"),
        ("--max-queue", "0"),
        ("--p99-ms", "0"),
        ("--p99-ms", "-5"),
        ("--log-sample", "1.5"),
        ("--log-sample", "-0.1"),
    ],
)
def test_out_of_range_options_are_rejected(mlp_path, option) -> None:
    result = invoke("serve", str(mlp_path), *option, "--no-store")
    assert result.exit_code == 2
    assert option[0] in result.output


def test_a_port_in_use_is_a_clear_error(mlp_path) -> None:
    sock = bind_socket("127.0.0.1", 0)
    sock.listen()
    try:
        result = invoke("serve", str(mlp_path), "--port", str(sock.getsockname()[1]), "--no-store")
    finally:
        sock.close()
    assert result.exit_code == 2 and "Cannot listen" in result.stderr


def _serve_once(
    mlp_path: pathlib.Path, env: dict[str, str], cwd: pathlib.Path | None = None
) -> tuple[int, str, str]:
    """Run `modelscale serve` on the MLP, answer one request, SIGTERM it: (exit code, stdout,
    stderr)."""
    cmd = [
        sys.executable,
        "-c",
        "import modelscale.cli.serve, modelscale.cli as c; c.main()",
        "serve",
        str(mlp_path),
        "--port",
        "0",
        "--replicas",
        "2",
        "--name",
        "mlp",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    try:
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                lines.append(raw.decode())
                if "Ready:" in lines[-1]:
                    ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert ready.wait(120), "".join(lines)
        url = re.search(r"Ready: (http://\S+)/v2", "".join(lines)).group(1)  # type: ignore[union-attr]
        body = json.dumps(
            {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}]}
        )
        req = urllib.request.Request(
            f"{url}/v2/models/mlp/infer", body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200 and json.loads(r.read())["outputs"][0]["shape"] == [1, 4]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        reader.join(10)
        assert proc.stdout is not None
        return code, proc.stdout.read().decode(), "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.e2e
def test_serve_answers_then_drains_on_sigterm_and_records_a_run(mlp_path) -> None:
    code, out, _ = _serve_once(mlp_path, dict(os.environ))
    assert code == 0 and "serving" in out
    runs = open_store().runs(kind="serve")
    assert len(runs) == 1 and runs[0].model_name == "mlp"
    assert runs[0].results["requests"]["mlp:1"]["200"] == 1


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["unreachable", "read-only"])
def test_serve_serves_when_the_knowledge_base_cannot_record(mlp_path, tmp_path, kind) -> None:
    env = dict(os.environ, MODELSCALE_DB_CONNECT_TIMEOUT_S="1")
    if kind == "unreachable":
        env["MODELSCALE_DB"] = "postgresql://nobody@127.0.0.1:1/x"
    else:
        db = tmp_path / "kb.sqlite"
        open_store(f"sqlite:///{db}").close()
        # Read-only as SQLite opens it (file permissions do not bind root, which CI may be).
        env["MODELSCALE_DB"] = f"sqlite:///file:{db}?mode=ro&uri=true"
    work = tmp_path / "work"
    work.mkdir()
    code, _, err = _serve_once(mlp_path, env, cwd=work)
    assert code == 0, err
    assert "Warning" in err and "not stored" in err, err
    saved = list(work.glob("*.json"))
    assert len(saved) == 1, err
    doc = json.loads(saved[0].read_text())
    assert doc["results"]["requests"]["mlp:1"]["200"] == 1


def test_keys_and_tls_flags_fail_clearly(tmp_path, mlp_path, monkeypatch) -> None:
    from modelscale.config import get_settings
    from modelscale.serve.keys import create_key, pepper_of

    monkeypatch.delenv("MODELSCALE_SECRET_FILE", raising=False)
    get_settings.cache_clear()
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    result = invoke("serve", str(mlp_path), "--tls-cert", str(cert), "--no-store")
    assert result.exit_code == 2, result.output
    assert "--tls-cert and --tls-key go together" in " ".join(result.stderr.split())
    result = invoke("serve", str(mlp_path), "--keys-file", "nokeys.json", "--no-store")
    assert result.exit_code == 2, result.output
    assert "auth.keys_file: file does not exist" in result.stderr
    # A keys file whose secret is nowhere to be found stops the server before it starts.
    keys = tmp_path / "conf" / "keys.json"
    create_key(keys, name="a", scopes=["infer"], pepper=pepper_of(b"\1" * 32))
    result = invoke("serve", str(mlp_path), "--keys-file", str(keys), "--port", "0", "--no-store")
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "server.secret_file" in message and "modelscale keys create" in message
