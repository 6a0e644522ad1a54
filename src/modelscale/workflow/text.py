"""Text in and personal data out: the MiniLM example served with text input, its payloads logged
after redaction, and the privacy audit of what the server stored.

``text_privacy_example`` serves all-MiniLM-L6-v2 with its tokenizer in the server (clients send
strings), logs every request's payload under the default policy (detected personal data replaced
by ``<KIND>``; a ``user`` parameter hashed), load-tests it with sentences some of which carry an
e-mail address, a phone number, a card or an IBAN, and then audits the log: the audit scans every
stored row for personal data and checks the audit log's hash chain.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow.parquet as pq

from modelscale.config import DeploymentSpec
from modelscale.examples import ExampleBuild, build_example
from modelscale.loadgen import LoadOptions, LoadResult, run_load
from modelscale.observe import LogLocation
from modelscale.privacy import PrivacyAudit, privacy_audit
from modelscale.progress import OnProgress, report
from modelscale.secret import create_secret
from modelscale.serve import start_server
from modelscale.workflow.record import Recorder

__all__ = ["PERSONAL", "TextStep", "text_privacy_example"]

PERSONAL = (
    "Write to maria.rossi@example.org about it.",
    "Call +44 20 7946 0958 after six.",
    "The card 4111 1111 1111 1111 was charged twice.",
    "Pay into GB82 WEST 1234 5698 7654 32 by Friday.",
)
"""Sentences with personal data (documentation and test values, nobody's real data)."""


@dataclass(frozen=True)
class TextStep:
    """The text model served, its load test, a logged payload and the privacy audit."""

    example: ExampleBuild
    url: str
    load: LoadResult
    load_run_id: int | None
    log_path: pathlib.Path
    payloads: int
    """Payloads logged."""
    example_payload: dict[str, Any]
    """One logged payload that had personal data in it, as stored."""
    audit: PrivacyAudit
    audit_run_id: int | None


def _texts(example: ExampleBuild, out: pathlib.Path) -> pathlib.Path:
    """The load test's texts: the example's sentences with a personal one every fifth line."""
    source = example.model_path.parent / example.meta.get("sentences_file", "minilm_sentences.txt")
    sentences = [s for s in source.read_text(encoding="utf-8").splitlines() if s.strip()][:200]
    lines = []
    for i, s in enumerate(sentences):
        lines.append(f"{s} {PERSONAL[(i // 5) % len(PERSONAL)]}" if i % 5 == 0 else s)
    path = out / "texts.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def text_privacy_example(
    out: pathlib.Path,
    *,
    recorder: Recorder,
    rate: float = 40.0,
    duration_s: float = 5.0,
    on_progress: OnProgress | None = None,
) -> TextStep:
    """Serve MiniLM with text input and redacted payload logging, load it, audit what it stored."""
    example = build_example("minilm", out_dir=out / "minilm", on_progress=on_progress)
    secret = out / "secret"
    if not secret.exists():
        create_secret(secret)
    log_path = out / "logs"
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "minilm": {
                    "versions": {"1": {"path": str(example.model_path)}},
                    "replicas": 1,
                    "threads": 2,
                    "batching": {"max_batch": 8, "max_wait_ms": 2},
                    "text": {"tokenizer": str(example.model_path.parent / "tokenizer.json")},
                    "privacy": {"parameters": {"user": "hash"}},
                }
            },
            "server": {"secret_file": str(secret)},
            "log": {"path": str(log_path), "flush_s": 1, "payloads": True},
        },
        source="the demo's text deployment",
    )
    texts = _texts(example, out)
    report(on_progress, "starting the text server")
    with start_server(spec) as server:
        loaded = run_load(
            server.url,
            model="minilm",
            options=LoadOptions(rate=rate, duration_s=duration_s, pattern="poisson", inputs=texts),
            on_progress=on_progress,
        )
    load_run = recorder.record(loaded)
    payloads = [
        orjson.loads(row["payload"])
        for f in sorted((log_path / "_payloads").rglob("*.parquet"))
        for row in pq.read_table(f, columns=["payload"]).to_pylist()
    ]
    shown = next(
        (p for p in payloads if any("<" in t for t in p["inputs"].get("text", []))),
        payloads[0] if payloads else {},
    )
    if recorder.store is None:  # the demo's recorder always has one
        raise RuntimeError("the text example needs a knowledge base to audit")
    audit = privacy_audit(store=recorder.store, location=LogLocation.of(log_path), spec=spec)
    audit_run = recorder.record(audit)
    return TextStep(
        example=example,
        url=server.url,
        load=loaded,
        load_run_id=load_run.run_id if load_run is not None else None,
        log_path=log_path,
        payloads=len(payloads),
        example_payload=shown,
        audit=audit,
        audit_run_id=audit_run.run_id if audit_run is not None else None,
    )
