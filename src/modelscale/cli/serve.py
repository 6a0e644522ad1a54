"""`modelscale serve`: serve ONNX models over the Open Inference Protocol (KServe V2)."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, fields
from typing import Any

import typer
from rich.table import Table

from modelscale.cli.app import app
from modelscale.cli.render import console, err_console, print_json
from modelscale.config import DeploymentSpec, load_deployment
from modelscale.errors import InvalidInput
from modelscale.serve.runner import ServeResult, run_server
from modelscale.workflow import NotStored, Recorded, Recorder

__all__ = ["ModelOptions", "build_spec", "render_spec", "serve_command"]


@dataclass(frozen=True)
class ModelOptions:
    """The per-model options of ``serve MODEL`` (None = not given on the command line)."""

    name: str | None = None
    replicas: int | None = None
    threads: int | None = None
    max_batch: int | None = None
    max_wait_ms: float | None = None
    max_queue: int | None = None
    p99_ms: float | None = None

    def given(self) -> list[str]:
        """The options given, as their command-line flags."""
        return [
            f"--{f.name.replace('_', '-')}"
            for f in fields(self)
            if getattr(self, f.name) is not None
        ]


def build_spec(
    model: pathlib.Path | None,
    config: pathlib.Path | None,
    *,
    options: ModelOptions,
    host: str | None = None,
    port: int | None = None,
    api_key_file: pathlib.Path | None = None,
    keys_file: pathlib.Path | None = None,
    tls_cert: pathlib.Path | None = None,
    tls_key: pathlib.Path | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    log: dict[str, Any] | None = None,
    tokenizer: pathlib.Path | None = None,
) -> DeploymentSpec:
    """The deployment spec from MODEL plus options, or from deploy.yaml (-c) with host/port/keys
    and TLS, with the backend (and Ray's address) and the request log's settings (``log``: keys of
    deploy.yaml's ``log`` section) given on the command line over the file's."""
    spec = _build_spec(
        model, config, options=options, host=host, port=port, api_key_file=api_key_file
    )
    if tokenizer is not None:
        if config is not None:
            raise InvalidInput(
                f"--tokenizer cannot be combined with -c; set models.<name>.text.tokenizer in "
                f"{config} instead.",
                field="tokenizer",
            )
        data = spec.model_dump(mode="json")
        for m in data["models"].values():
            m["text"] = {"tokenizer": str(tokenizer)}
        spec = DeploymentSpec.from_dict(data, source="serve options")
    if keys_file is not None or tls_cert is not None or tls_key is not None:
        data = spec.model_dump(mode="json")
        if keys_file is not None:
            data["auth"]["keys_file"] = str(keys_file)
        for name, value in (("tls_cert", tls_cert), ("tls_key", tls_key)):
            if value is not None:
                data["server"][name] = str(value)
        spec = DeploymentSpec.from_dict(data, source="serve options")
    if log:
        data = spec.model_dump(mode="json")
        data["log"].update(log)
        spec = DeploymentSpec.from_dict(data, source="serve options")
    if backend is None and ray_address is None:
        return spec
    if backend is not None and backend not in ("local", "ray"):
        raise InvalidInput(
            f"--backend must be local or ray. Got {backend!r} instead.", field="backend"
        )
    data = spec.model_dump(mode="json")
    if backend is not None:
        data["backend"] = backend
    if ray_address is not None:
        if data["backend"] != "ray":
            raise InvalidInput(
                "--ray-address needs the Ray backend: add --backend ray (or backend: ray in "
                "deploy.yaml).",
                field="ray-address",
            )
        data["ray"]["address"] = ray_address
    return DeploymentSpec.from_dict(data, source="serve options")


def _build_spec(
    model: pathlib.Path | None,
    config: pathlib.Path | None,
    *,
    options: ModelOptions,
    host: str | None,
    port: int | None,
    api_key_file: pathlib.Path | None,
) -> DeploymentSpec:
    if model is not None and config is not None:
        raise InvalidInput("Give either MODEL or -c deploy.yaml, not both.", field="config")
    if config is not None:
        given = options.given()
        if given:
            raise InvalidInput(
                f"{', '.join(given)} cannot be combined with -c; set it in {config} instead.",
                field=given[0].lstrip("-"),
            )
        spec = load_deployment(config)
        if host is None and port is None and api_key_file is None:
            return spec
        data = spec.model_dump(mode="json")
        data["server"].update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
        if api_key_file is not None:
            data["auth"]["api_key_file"] = str(api_key_file)
        return DeploymentSpec.from_dict(data, source="serve options")
    if model is None:
        raise InvalidInput(
            "Nothing to serve: give an ONNX file (modelscale serve model.onnx) or a deployment "
            "spec (modelscale serve -c deploy.yaml).",
            field="model",
        )
    o = options
    return DeploymentSpec.single(
        model,
        name=o.name,
        replicas=o.replicas if o.replicas is not None else 1,
        threads=o.threads if o.threads is not None else 1,
        max_batch=o.max_batch,
        max_wait_ms=o.max_wait_ms,
        max_queue=o.max_queue if o.max_queue is not None else 256,
        p99_ms=o.p99_ms,
        host=host or "127.0.0.1",
        port=8000 if port is None else port,
        api_key_file=api_key_file,
    )


def render_spec(spec: DeploymentSpec) -> None:
    """Print what is about to be served."""
    table = Table(title="serving (Open Inference Protocol V2)")
    for col in (
        "model",
        "version",
        "file",
        "weight",
        "replicas x threads",
        "batch / wait / queue",
        "p99 SLO",
    ):
        table.add_column(col)
    if spec.backend == "ray":
        where = spec.ray.address or "a local Ray started now"
        table.title = f"serving on Ray ({where}; Open Inference Protocol V2)"
    for name, m in spec.models.items():
        for label, v in m.versions.items():
            wait = m.max_wait_ms
            if m.adaptive:
                bound = "" if wait is None else f" <= {wait:g} ms"
                batching = (
                    f"from the SLO: <= {m.max_batch} / chosen{bound} / {m.batching.max_queue}"
                )
            else:
                batching = f"{m.max_batch} / {wait or 0:g} ms / {m.batching.max_queue}"
            table.add_row(
                name,
                label,
                str(v.path),
                f"{v.weight:g}",
                f"{m.replicas} x {m.threads}",
                batching,
                f"{m.slo.p99_ms:g} ms" if m.slo.p99_ms else "-",
            )
    console.print(table)


@app.command("serve")
def serve_command(
    model: pathlib.Path | None = typer.Argument(None, help="ONNX model file (or use -c)."),
    config: pathlib.Path | None = typer.Option(
        None, "--config", "-c", help="Deployment spec (deploy.yaml): several models and versions."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Model name in URLs (default: file stem)."
    ),
    replicas: int | None = typer.Option(
        None, "--replicas", "-r", min=1, max=64, help="Replica processes [1]."
    ),
    threads: int | None = typer.Option(
        None, "--threads", "-t", min=1, max=256, help="Intra-op threads per replica [1]."
    ),
    max_batch: int | None = typer.Option(
        None,
        "--max-batch",
        min=1,
        max=4096,
        help="Rows per batch at most [8; with --p99-ms an upper bound, 64].",
    ),
    max_wait_ms: float | None = typer.Option(
        None,
        "--max-wait-ms",
        min=0,
        help="Batch wait after its first request [5; with --p99-ms chosen per batch, this bounds it].",
    ),
    max_queue: int | None = typer.Option(
        None, "--max-queue", min=1, help="Queued requests before 503 [256]."
    ),
    p99_ms: float | None = typer.Option(
        None,
        "--p99-ms",
        min=0.001,
        help="p99 SLO: batch sizes and waits are chosen to meet it, and load predicted to miss "
        "it is shed.",
    ),
    host: str | None = typer.Option(None, "--host", help="Address to listen on [127.0.0.1]."),
    port: int | None = typer.Option(
        None, "--port", "-p", min=0, max=65535, help="Port [8000]; 0 = any free."
    ),
    api_key_file: pathlib.Path | None = typer.Option(
        None,
        "--api-key-file",
        help="Require 'Authorization: Bearer <key>' (key on the file's first line).",
    ),
    keys_file: pathlib.Path | None = typer.Option(
        None,
        "--keys-file",
        help="Require scoped keys made by `modelscale keys create` (the JSON keys file); its "
        "secret: server.secret_file, MODELSCALE_SECRET_FILE, or 'secret' beside it.",
    ),
    tls_cert: pathlib.Path | None = typer.Option(
        None, "--tls-cert", help="Serve HTTPS with this certificate (PEM); needs --tls-key."
    ),
    tls_key: pathlib.Path | None = typer.Option(
        None, "--tls-key", help="The private key of --tls-cert (PEM)."
    ),
    tokenizer: pathlib.Path | None = typer.Option(
        None,
        "--tokenizer",
        help="Take text: clients send strings (BYTES input 'text') and this tokenizer.json "
        "(or its folder) turns them into the model's token inputs.",
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="What runs the replicas: local processes, or ray (Ray Serve deployments) [local].",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster (host:port, ray://host:port or auto); none starts a local Ray.",
    ),
    log_sample: float | None = typer.Option(
        None,
        "--log-sample",
        min=0.0,
        max=1.0,
        help="Share of successful requests in the request log; errors are always logged [1].",
    ),
    log_dir: str | None = typer.Option(
        None,
        "--log-dir",
        help="Where the request log goes: a directory or a URL such as s3://bucket/prefix "
        "[.modelscale/logs].",
    ),
    request_log: bool = typer.Option(
        True, "--request-log/--no-request-log", help="Write the request log."
    ),
    store: bool = typer.Option(
        True, "--store/--no-store", help="Record the models and a serve run."
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    as_json: bool = typer.Option(False, "--json", help="At exit, print what was served as JSON."),
) -> None:
    """Serve MODEL (or the models of -c deploy.yaml) until SIGTERM/Ctrl-C, then drain and exit 0."""
    options = ModelOptions(name, replicas, threads, max_batch, max_wait_ms, max_queue, p99_ms)
    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise InvalidInput(
            f"--log-level must be one of critical, error, warning, info, debug, trace. Got {log_level!r}.",
            field="log-level",
        )
    spec = build_spec(
        model,
        config,
        options=options,
        host=host,
        port=port,
        api_key_file=api_key_file,
        keys_file=keys_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        backend=backend,
        ray_address=ray_address,
        tokenizer=tokenizer,
        log={
            k: v
            for k, v in (
                ("sample", log_sample),
                ("path", log_dir),
                ("enabled", None if request_log else False),
            )
            if v is not None
        },
    )
    # A knowledge base that cannot be opened (unreachable, read-only) must not stop the serving:
    # the server runs, and at exit the serve run is saved as JSON instead.
    recorder = Recorder.open(store, url=spec.store.url, tolerant=True)
    if recorder.open_error is not None:
        err_console.print(
            f"[yellow]Warning:[/yellow] the knowledge base cannot be opened "
            f"({recorder.open_error}); serving anyway, and the serve run will be saved as JSON.",
            soft_wrap=True,
        )
    if recorder.store is not None:
        # Models batched from their objective start from this machine's stored profile.
        from modelscale.serve.prior import with_stored_batch_times

        spec = with_stored_batch_times(spec, recorder.store)
    if not as_json:
        render_spec(spec)

    def ready(url: str) -> None:
        err_console.print(
            f"Ready: {url}/v2 (metrics at {url}/metrics, dashboard at {url}/dashboard). "
            "Ctrl-C or SIGTERM drains and stops.",
            soft_wrap=True,
        )
        if spec.log.enabled:
            err_console.print(
                f"Request log: {spec.log.where} (`modelscale logs tail {url}`).",
                soft_wrap=True,
            )

    result: ServeResult = run_server(spec, on_ready=ready, log_level=log_level)
    kept = recorder.keep(result)
    run_id = kept.run_id if isinstance(kept, Recorded) else None
    if as_json:
        extra = {"not_stored": kept.message()} if isinstance(kept, NotStored) else {}
        print_json({"run_id": run_id, **extra, **result.to_dict()})
    else:
        total = sum(sum(v.values()) for v in result.requests.values())
        err_console.print(
            f"Stopped after {result.uptime_s:.0f} s; {total} inference requests"
            + (f"; stored as run {run_id}." if run_id is not None else ".")
        )
    if isinstance(kept, NotStored):
        err_console.print(f"[yellow]Warning:[/yellow] {kept.message()}", soft_wrap=True)
