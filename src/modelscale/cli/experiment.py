"""`modelscale experiment status | stop | promote | rollback`: a server's A/B test, shadow or canary."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.remote import fetch_json, is_url, read_api_key
from modelscale.cli.render import console, print_json
from modelscale.errors import InvalidInput

__all__ = ["action_command", "experiment_app", "render_status", "status_command"]

experiment_app = typer.Typer(
    cls=CommandGroup,
    help="A server's experiments (deploy.yaml experiment:): per-arm traffic, latency, errors and "
    "metrics with always-valid intervals; the decision; stop, promote or roll back.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")

_URL = typer.Argument(..., help="The server's URL (http://host:port).")
_MODEL = typer.Argument(..., help="The model whose experiment it is.")
_KEY = typer.Option(None, "--api-key-file", help="The server's API key (first line of the file).")
_JSON = typer.Option(False, "--json", help="Print JSON.")


def _route(url: str, model: str) -> str:
    if not is_url(url):
        raise InvalidInput(
            f"{url!r} is not a server's URL; expected http://host:port (where `modelscale serve` "
            "runs the experiment).",
            field="url",
        )
    return f"/v2/models/{model}/experiment"


def _num(v: Any, fmt: str = ".4g") -> str:
    return "-" if v is None else format(v, fmt)


def _interval(ci: Any, fmt: str = "+.4g") -> str:
    if not ci or (ci[0] is None and ci[1] is None):
        return "-"
    lo = "-inf" if ci[0] is None else format(ci[0], fmt)
    hi = "+inf" if ci[1] is None else format(ci[1], fmt)
    return f"{lo} .. {hi}"


def render_status(s: dict[str, Any]) -> None:
    """Print one experiment's status as tables."""
    colour = {"running": "cyan", "promoted": "green", "rolled_back": "red", "stopped": "yellow"}
    share = s["treatment_share"]
    head = (
        f"[bold]{escape(s['experiment'])}[/] ({escape(s['model'])}, {s['kind']}, unit "
        f"{escape(s['unit'])}): [{colour.get(s['state'], 'white')}]{s['state']}[/], "
        f"treatment at {share:.0%}"
    )
    if s.get("ramp"):
        head += f", step {s['step'] + 1} of {len(s['ramp'])} (ramp {s['ramp']})"
    console.print(head)
    decision = s["decision"]
    style = "red" if decision == "guardrail breached" else ("green" if "wins" in decision else "")
    console.print(f"Decision: [{style or 'bold'}]{escape(decision)}[/]")
    for why in s.get("reasons") or []:
        console.print(f"  [red]{escape(why)}[/]")
    arms = Table(title="Arms (all steps)", title_justify="left")
    for col in ("arm", "version", "requests", "units", "error rate", "p50 ms", "p99 ms"):
        arms.add_column(col, justify="left" if col in ("arm", "version") else "right")
    for name, a in s["arms"].items():
        arms.add_row(
            name,
            escape(str(a["version"])),
            str(a["requests"]),
            str(a["units"]),
            _num(a["error_rate"], ".2%"),
            _num(a["p50_ms"], ".2f"),
            _num(a["p99_ms"], ".2f"),
        )
    console.print(arms)
    table = Table(
        title="Metrics (this step; always-valid intervals, safe to look at any time)",
        title_justify="left",
    )
    # Two lines per metric (value, then its interval or n) keep the table within 80 columns.
    for col in ("metric", "control", "treatment", "difference", "lift", "p"):
        table.add_column(
            col, justify="left" if col == "metric" else "right", no_wrap=col == "metric"
        )
    for m in s["metrics"]:
        role = m["role"] + (f", tol {m['tolerance']:g}" if m.get("tolerance") is not None else "")
        name = m["metric"] + (" (log s)" if m["metric"] == "latency" else "")
        label = f"{escape(name)}\n[dim]{escape(role)}[/]"
        if "agreement" in m:
            a = m["agreement"]
            table.add_row(
                label, "", f"{_num(a['mean'], '.2%')}\n{_interval(a['ci'], '.2%')}", "", "", ""
            )
            continue
        c = m.get("comparison")
        if not c:
            table.add_row(label, "-", "-", "-", "-", "-")
            continue
        ready = c["ready"]
        table.add_row(
            label,
            f"{_num(c['control_mean'])}\n[dim]n={c['control']['n']}[/]",
            f"{_num(c['treatment_mean'])}\n[dim]n={c['treatment']['n']}[/]",
            f"{_num(c['difference'], '+.4g')}\n"
            + (_interval(c["ci"], "+.3g") if ready else "[dim]needs more units[/]"),
            f"{_num(c['lift'], '+.1%')}\n" + (_interval(c["lift_ci"], "+.1%") if ready else ""),
            _num(c["p_value"], ".2g"),
        )
    console.print(table)
    srm = s.get("srm")
    if srm:
        flag = "[red]MISMATCH[/]" if srm["flagged"] else "ok"
        console.print(
            f"Sample ratio: units {srm['counts']} for expected shares "
            f"{[round(x, 3) for x in srm['expected']]}: {flag} (always-valid p = "
            f"{srm['p_value']:.3g})"
        )
    sh = s["shadow"]
    if sh["sent"] or sh["dropped"]:
        console.print(
            f"Copies to the other arm: {sh['sent']} sent, {sh['compared']} compared, "
            f"{sh['dropped']} dropped, {sh['failed']} failed; largest output difference "
            f"{sh['max_abs_error']:.3g}"
        )
    o = s["outcomes"]
    if any(o.values()) or s["missing_unit"]:
        console.print(
            f"Outcomes: {o['accepted']} accepted, {o['unknown']} unknown, {o['expired']} "
            f"expired, {o['invalid']} invalid; requests without the unit key: {s['missing_unit']}"
        )
    for e in s.get("events") or []:
        when = dt.datetime.fromtimestamp(e["at"], dt.UTC).strftime("%H:%M:%S")
        console.print(f"  {when} UTC {escape(e['event'])}: {escape(e['detail'])}")


@experiment_app.command("status")
def status_command(
    url: str = _URL,
    model: str = _MODEL,
    api_key_file: pathlib.Path | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Where the experiment stands: per arm requests, latency and errors; each metric with its
    always-valid interval and lift; the sample-ratio check; the decision."""
    route = _route(url, model)
    status = fetch_json(url, route, read_api_key(api_key_file, remote=True), {})
    if as_json:
        print_json(status)
        return
    render_status(status)


def action_command(
    action: str, url: str, model: str, api_key_file: pathlib.Path | None, as_json: bool
) -> None:
    """POST ``action`` to the model's experiment and print the new state."""
    route = _route(url, model)
    status = fetch_json(
        url, route, read_api_key(api_key_file, remote=True), {}, post={"action": action}
    )
    if as_json:
        print_json(status)
        return
    console.print(
        f"{escape(status['experiment'])}: {status['state']} (treatment at "
        f"{status['treatment_share']:.0%}); recorded in the knowledge base."
    )


@experiment_app.command("stop")
def stop_command(
    url: str = _URL,
    model: str = _MODEL,
    api_key_file: pathlib.Path | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Stop the experiment: every unit goes to the control from now on."""
    action_command("stop", url, model, api_key_file, as_json)


@experiment_app.command("promote")
def promote_command(
    url: str = _URL,
    model: str = _MODEL,
    api_key_file: pathlib.Path | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Promote the treatment: every unit goes to it from now on (deploy.yaml is not rewritten;
    make the treatment the model's version there when you next deploy)."""
    action_command("promote", url, model, api_key_file, as_json)


@experiment_app.command("rollback")
def rollback_command(
    url: str = _URL,
    model: str = _MODEL,
    api_key_file: pathlib.Path | None = _KEY,
    as_json: bool = _JSON,
) -> None:
    """Roll the treatment back: every unit goes to the control from now on."""
    action_command("rollback", url, model, api_key_file, as_json)
