"""`modelscale monitor baseline | run | status`: drift, data quality and accuracy."""

from __future__ import annotations

import datetime as dt
import pathlib
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.monitor import monitor_app
from modelscale.cli.remote import fetch_json, is_url, read_api_key
from modelscale.cli.render import ProgressBar, console, err_console, print_json, print_table
from modelscale.errors import InvalidInput
from modelscale.model import ModelArtifact, load_npz
from modelscale.workflow import Recorder

__all__ = ["baseline_command", "render_window", "run_command", "status_command"]

_LABEL_KEYS = ("labels", "label", "y", "target")


def _labels(path: pathlib.Path, key: str | None, inputs: Sequence[str]) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if key is not None:
                if key not in names:
                    raise InvalidInput(
                        f"{path} has no array {key!r} for --labels (it has: {', '.join(names)})",
                        field="labels",
                    )
                return np.asarray(npz[key])
            for k in _LABEL_KEYS:
                if k in names and k not in inputs:
                    return np.asarray(npz[k])
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInput(f"{path} is not a readable .npz file ({exc})", field="data") from None
    return None


@monitor_app.command("baseline")
def baseline_command(
    model: pathlib.Path = typer.Argument(..., help="ONNX model file (the version to watch)."),
    data: pathlib.Path | None = typer.Option(
        None,
        "--data",
        help="Reference inputs: an .npz with one array per model input (and labels, optional). "
        "Default: the eval set the model's newest `compress` run used.",
    ),
    name: str | None = typer.Option(
        None, "--name", help="A name to find the baseline by (deploy.yaml monitor.baseline)."
    ),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="The .npz array holding the true labels (default: labels, label, y or target "
        "when present).",
    ),
    task: str = typer.Option(
        "auto", "--task", help="classification, regression or auto (from labels and outputs)."
    ),
    model_name: str | None = typer.Option(
        None, "--model-name", help="The served model's name (default: the file's stem)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Profile MODEL on reference data with sketches: the baseline live windows are tested against.

    Runs the model over --data, keeps a KLL / frequent-items / HLL sketch per watched feature of
    the inputs and outputs, and with labels the reference accuracy and the confidence
    calibration of the label-free estimate. Stored in the knowledge base under the version.
    """
    from modelscale.monitor import BaselineOptions, build_baseline
    from modelscale.monitor.baseline import compress_eval_set

    options = BaselineOptions(name=name, task=task)
    artifact = ModelArtifact.load(model, name=model_name)
    recorder = Recorder.open(True)
    if data is None:
        assert recorder.store is not None  # Recorder.open(True) always opens one
        found = compress_eval_set(recorder.store, artifact.sha256)
        if found is None:
            raise InvalidInput(
                f"no --data, and no compress run of {artifact.name} ({artifact.sha256[:12]}) "
                "with an eval set on disk to use instead. Give reference inputs: --data ref.npz",
                field="data",
            )
        data = pathlib.Path(found[0])
        if found[1] != "labels":  # the default key is among those looked for anyway
            labels = labels or found[1]
        err_console.print(
            f"Reference: {data}, the eval set of compress run {found[2]}.", soft_wrap=True
        )
    arrays = load_npz(data, artifact.signature)
    y = _labels(data, labels, list(arrays))
    bar = ProgressBar()
    with bar.showing("baseline"):
        result = build_baseline(
            artifact, arrays, labels=y, options=options, source=data.name, on_progress=bar
        )
    run_id = recorder.run_id(result)
    if as_json:
        out = result.to_dict()
        out.pop("profile")
        print_json({**out, "run_id": run_id})
        return
    kinds = result.features
    numeric = sum(1 for k in kinds.values() if k == "numeric")
    console.print(
        f"Baseline {escape(result.name)} of {escape(artifact.name)} "
        f"({artifact.sha256[:12]}): {result.rows:,} rows, {len(kinds)} features "
        f"({numeric} numeric, {len(kinds) - numeric} categorical), task {result.task}.",
        soft_wrap=True,
    )
    ref = result.reference_metric
    if ref is not None:
        console.print(
            f"Reference {ref['metric']}: {ref['value']:.4f} [{ref['lo']:.4f}, {ref['hi']:.4f}] "
            f"on {ref['n']:,} labelled rows"
            + (
                "; confidence calibrated for the label-free estimate."
                if result.calibration
                else "."
            ),
            soft_wrap=True,
        )
    shown = ", ".join(list(kinds)[:8]) + (" ..." if len(kinds) > 8 else "")
    console.print(f"Features: {escape(shown)}", soft_wrap=True)
    if run_id is not None:
        err_console.print(f"Stored as run {run_id} (modelscale runs show {run_id}).")


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def render_window(w: Mapping[str, Any], *, limit: int = 15, current: bool = False) -> None:
    """Print one window: the feature table, data quality and the accuracy line."""
    d, acc = w["drift"], w["accuracy"]
    start = dt.datetime.fromtimestamp(w["start"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    end = dt.datetime.fromtimestamp(w["end"], dt.UTC).strftime("%H:%M:%S")
    colour = {"ok": "green", "drift": "red", "quality": "yellow", "accuracy": "red"}.get(
        w["verdict"], "white"
    )
    what = "open window, so far:" if current else "window"
    console.print(
        f"[bold]{escape(w['model'])}[/] v{escape(str(w['version']))} {what} {start}-{end} UTC: "
        f"{d['rows']:,} rows, {d['requests']:,} requests — [{colour}]{w['verdict']}[/]",
        soft_wrap=True,
    )
    feats = sorted(
        d["features"],
        key=lambda f: (not f["drift"], f["p_adjusted"] if f["p_adjusted"] is not None else 2.0),
    )
    table = Table()
    for col in (
        "feature",
        "test",
        "statistic",
        "± sketch",
        "p",
        "p adj (BH)",
        "effect",
        "PSI",
        "verdict",
    ):
        table.add_column(col, justify="left" if col in ("feature", "test", "verdict") else "right")
    for f in feats[:limit]:
        stat = f["statistic"]
        table.add_row(
            escape(f["feature"]),
            f["test"],
            "-" if stat is None else f"{stat:.4f}",
            f"{f['error_bound']:.4f}",
            _fmt_p(f["p_value"]),
            _fmt_p(f["p_adjusted"]),
            "-" if f["effect"] is None else f"{f['effect']:.3f}",
            "-" if f["psi"] is None else f"{f['psi']:.3f}",
            "[red]drift[/]" if f["drift"] else "ok",
        )
    print_table(table)
    if len(feats) > limit:
        console.print(f"... and {len(feats) - limit} more features (--json for all)")
    dom = d.get("domain")
    if dom and "skipped" in dom:
        console.print(f"Domain classifier: skipped, {dom['skipped']}")
    elif dom and "error" in dom:
        console.print(f"[yellow]Domain classifier failed: {escape(dom['error'])}[/]")
    elif dom:
        console.print(
            f"Domain classifier: AUC {dom['auc']:.3f} [{dom['lo']:.3f}, {dom['hi']:.3f}], "
            f"p {_fmt_p(dom['p_value'])} — {'[red]drift[/]' if dom['drift'] else 'ok'}"
        )
    for q in d.get("quality", []):
        console.print(f"[yellow]! {escape(q['message'])}[/]", soft_wrap=True)
    console.print(_accuracy_line(acc), soft_wrap=True)


def _accuracy_line(acc: Mapping[str, Any]) -> str:
    metric = acc.get("metric", "accuracy")
    parts = []
    ref = acc.get("reference")
    r, e = acc.get("realized"), acc.get("estimate")
    if not (r or e or ref):
        return "Accuracy: not measured (no labelled baseline, no feedback yet)"
    if r:
        parts.append(
            f"{metric} {r['value']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] from {r['n']:,} labels"
        )
    else:
        parts.append(f"{metric}: no labels yet")
    if e:
        parts.append(f"estimate (no labels, CBPE) {e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]")
    if ref:
        parts.append(f"baseline {ref['value']:.3f}")
    text = "Accuracy: " + "; ".join(parts)
    return f"[red]{text} — below the baseline[/]" if acc.get("drop") else text


@monitor_app.command("run")
def run_command(
    logs: str = typer.Option(..., "--logs", help="The log directory (or URL) servers wrote."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    window_s: float = typer.Option(300.0, "--window", help="Window length in seconds."),
    since: str | None = typer.Option(
        None, "--since", help="Only windows ending after this (ISO time, or 30m / 2h / 1d ago)."
    ),
    alpha: float = typer.Option(0.01, "--alpha", help="False discovery rate across features."),
    min_effect: float = typer.Option(0.1, "--min-effect", help="Smallest effect that is drift."),
    store: bool = typer.Option(True, "--store/--no-store", help="Record the run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Merge the window sketches of every server under --logs by period, and test each window."""
    from modelscale.monitor import DriftOptions, monitor_logs
    from modelscale.monitor.baseline import Baseline
    from modelscale.monitor.feature import find_baseline
    from modelscale.store import open_store

    options = DriftOptions(alpha=alpha, min_effect=min_effect)
    recorder = Recorder.open(store)
    kb = open_store()

    def baseline_of(name: str, version: str, run_id: int | None) -> Baseline | None:
        if run_id is not None:
            try:
                return Baseline.from_run(kb.run(int(run_id)))
            except InvalidInput:
                pass
        return find_baseline(kb, sha256="", model=name)

    try:
        bar = ProgressBar()
        with bar.showing("monitor", lazy=True):
            result = monitor_logs(
                logs,
                baseline_of=baseline_of,
                model=model,
                window_s=window_s,
                since=since,
                options=options,
                on_progress=bar,
            )
    finally:
        kb.close()
    run_id = recorder.run_id(result) if result.windows else None
    if as_json:
        print_json({"run_id": run_id, **result.to_dict()})
        return
    if not result.windows:
        console.print(
            f"No monitor windows under {escape(logs)}: servers write them (with a baseline) "
            "under <log dir>/monitor/ as windows close."
        )
        return
    for w in result.windows:
        render_window(w.to_dict(), limit=8)
        console.print()
    drifted = sum(1 for w in result.windows if w.verdict != "ok")
    console.print(f"{len(result.windows)} window(s) from {result.files} file(s): {drifted} not ok.")


@monitor_app.command("status")
def status_command(
    target: str = typer.Argument(..., help="A server's URL (http://host:port) or a model name."),
    model: str | None = typer.Option(None, "--model", help="Only this model (with a URL)."),
    windows: int = typer.Option(
        1, "--windows", "-n", min=0, max=100, help="Closed windows to show (besides the open one)."
    ),
    api_key_file: pathlib.Path | None = typer.Option(
        None, "--api-key-file", help="The server's API key (first line of the file)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The current window (a server's open one, tested as it stands) and the latest closed ones:
    per-feature tests, verdicts and accuracy. A model name reads the knowledge base's closed
    windows."""
    remote = is_url(target)
    key = read_api_key(api_key_file, remote=remote)
    if remote:
        body = fetch_json(target, "/v2/monitor", key, {})
        views = [v for v in body.get("models", []) if model is None or v["model"] == model]
        if as_json:
            print_json({"models": views, "feedback": body.get("feedback", {})})
            return
        if not views:
            console.print(
                "The server watches no model"
                + (f" named {escape(model)}" if model else "")
                + ": it needs a baseline (modelscale monitor baseline MODEL --data ref.npz)."
            )
            return
        for v in views:
            if v["firing"]:
                console.print(
                    f"[red]Alerts firing for {escape(v['model'])}: {', '.join(v['firing'])}[/]"
                )
            if v.get("current"):
                render_window(v["current"], current=True)
            else:
                o = v["open"]
                console.print(
                    f"{escape(v['model'])} v{v['version']}: no request in the open window yet; "
                    f"it closes at {dt.datetime.fromtimestamp(o['closes'], dt.UTC):%H:%M:%S} UTC."
                )
            for w in v["windows"][:windows]:
                console.print()
                render_window(w)
        return
    from modelscale.store import open_store

    kb = open_store()
    try:
        runs = [
            r
            for r in kb.runs(model=target, kind="drift", limit=max(50, windows * 5))
            if "verdict" in r.results
        ][: max(windows, 1)]
    finally:
        kb.close()
    if as_json:
        print_json({"windows": [r.results | {"run_id": r.id} for r in runs]})
        return
    if not runs:
        raise InvalidInput(
            f"no monitor windows of {target!r} in the knowledge base. A server with a baseline "
            "records one per closed window; pass a server's URL to see its open window.",
            field="target",
        )
    for r in runs:
        render_window(r.results | {"model": r.results.get("model", target)})
