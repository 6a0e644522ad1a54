"""Experiments in a real server over real HTTP with real replicas: canary steps, rollback on
wrong outputs and on slowness, shadow copies, A/B assignment by unit, outcomes, actions, and
the state kept in (and resumed from) a real knowledge base."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import httpx
import numpy as np
import pytest

from modelscale.config import DeploymentSpec
from modelscale.errors import ServerError
from modelscale.serve import start_server
from modelscale.store import open_store
from tests.cli.helpers import invoke
from tests.experiment.models import D_IN, predict, save_classifier

pytestmark = pytest.mark.e2e


def _spec(
    tmp_path: pathlib.Path, treatment: pathlib.Path, *, monitor: bool = False, **experiment: Any
) -> DeploymentSpec:
    control = tmp_path / "control.onnx"
    if not control.exists():
        save_classifier(control)
    return DeploymentSpec.from_dict(
        {
            "models": {
                "clf": {
                    "versions": {
                        "1": {"path": str(control)},
                        "2": {"path": str(treatment), "weight": 0},
                    },
                    "batching": {"max_batch": 8, "max_wait_ms": 1},
                    "monitor": {"enabled": monitor},
                    "experiment": {"arms": {"control": "1", "treatment": "2"}, **experiment},
                }
            },
            "log": {"enabled": False},
        }
    )


def _body(x: np.ndarray, rid: str | None = None, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    if rid is not None:
        body["id"] = rid
    if params:
        body["parameters"] = params
    return body


def _rows(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    return rng.standard_normal((n, D_IN)).astype(np.float32)


def _status(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/v2/models/clf/experiment")
    assert r.status_code == 200, r.text
    return r.json()


def _drive(
    c: httpx.Client, rng: np.random.Generator, until: Any, *, limit: int = 3000, **kw: Any
) -> tuple[dict[str, Any], list[str]]:
    """Send requests until ``until(status)`` holds; the status and the arms answered."""
    arms = []
    for i in range(limit):
        r = c.post("/v2/models/clf/infer", json=_body(_rows(rng), **kw))
        assert r.status_code == 200, r.text
        arms.append(r.headers["x-modelscale-arm"])
        if i % 20 == 19:
            time.sleep(0.6)  # the tests run at most twice a second
            status = _status(c)
            if until(status):
                return status, arms
    raise AssertionError(f"not reached after {limit} requests: {_status(c)}")


def test_canary_of_an_agreeing_treatment_steps_up_to_100_percent_and_is_recorded(
    tmp_path: pathlib.Path,
) -> None:
    treatment = save_classifier(tmp_path / "treatment.onnx", nudge=1e-4)
    spec = _spec(
        tmp_path,
        treatment,
        kind="canary",
        ramp=[20, 50, 100],
        min_units=30,
        step_min_units=40,
        step_min_s=0,
    )
    rng = np.random.default_rng(0)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        first = _status(c)
        assert first["state"] == "running" and first["treatment_share"] == pytest.approx(0.2)
        status, arms = _drive(c, rng, lambda s: s["state"] != "running")
        assert status["state"] == "promoted", status
        assert status["decision"] == "treatment wins"
        events = [e["event"] for e in status["events"]]
        assert events == ["started", "advanced", "promoted"], events
        # Every request from now on goes to the treatment, and says so.
        after = [
            c.post("/v2/models/clf/infer", json=_body(_rows(rng))).headers["x-modelscale-arm"]
            for _ in range(20)
        ]
        assert set(after) == {"treatment"}
        # A request naming a version bypasses the experiment.
        direct = c.post("/v2/models/clf/versions/1/infer", json=_body(_rows(rng)))
        assert direct.status_code == 200 and "x-modelscale-arm" not in direct.headers
        agreement = next(m for m in status["metrics"] if m["metric"] == "agreement")
        assert agreement["agreement"]["mean"] == pytest.approx(1.0)
        metrics = c.get("/metrics").text
    assert (
        'modelscale_experiment_running{experiment="clf-1-vs-2-canary",model="clf"} 0.0' in metrics
    )
    assert arms.count("treatment") >= 80 and arms.count("control") > 0
    store = open_store()
    runs = [r for r in store.runs(kind="experiment") if r.results["event"]["model"] == "clf"]
    assert [r.results["event"]["event"] for r in reversed(runs)] == [
        "started",
        "advanced",
        "promoted",
    ]


def test_canary_of_a_treatment_with_wrong_outputs_is_rolled_back_by_output_agreement(
    tmp_path: pathlib.Path,
) -> None:
    treatment = save_classifier(tmp_path / "wrong.onnx", wrong=True)
    spec = _spec(
        tmp_path, treatment, kind="canary", ramp=[20, 100], min_units=30, step_min_units=10**6
    )
    rng = np.random.default_rng(1)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        status, _ = _drive(c, rng, lambda s: s["state"] != "running")
        assert status["state"] == "rolled_back", status
        assert status["decision"] == "guardrail breached"
        assert status["reasons"][0].startswith("agreement: output agreement")
        served = status["arms"]["treatment"]["requests"]
        assert 30 <= served < 200, served  # rolled back soon after the test could tell
        after = [
            c.post("/v2/models/clf/infer", json=_body(_rows(rng))).headers["x-modelscale-arm"]
            for _ in range(30)
        ]
        assert set(after) == {"control"}
        # A finished experiment takes no action.
        r = c.post("/v2/models/clf/experiment", json={"action": "promote"})
        assert r.status_code == 409 and "has finished (rolled_back)" in r.json()["error"]


def test_canary_of_a_slow_treatment_is_rolled_back_by_latency(tmp_path: pathlib.Path) -> None:
    treatment = save_classifier(tmp_path / "slow.onnx", slow=12)
    spec = _spec(
        tmp_path,
        treatment,
        kind="canary",
        ramp=[30, 100],
        min_units=30,
        step_min_units=10**6,
        guardrails=["errors", "latency"],
    )
    rng = np.random.default_rng(2)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        status, _ = _drive(c, rng, lambda s: s["state"] != "running")
    assert status["state"] == "rolled_back", status
    assert status["reasons"][0].startswith("latency: latency x"), status["reasons"]
    arms = status["arms"]
    assert arms["treatment"]["p50_ms"] > 1.2 * arms["control"]["p50_ms"]


def test_shadow_copies_every_request_to_the_candidate_and_never_answers_with_it(
    tmp_path: pathlib.Path,
) -> None:
    treatment = save_classifier(tmp_path / "wrong.onnx", wrong=True)
    spec = _spec(tmp_path, treatment, kind="shadow", min_units=30)
    rng = np.random.default_rng(3)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        for _ in range(120):
            x = _rows(rng)
            r = c.post("/v2/models/clf/infer", json=_body(x))
            assert r.status_code == 200 and r.headers["x-modelscale-arm"] == "control"
            got = np.asarray(r.json()["outputs"][0]["data"]).reshape(1, -1).argmax(axis=1)
            assert (got == predict(x)).all()  # the primary's answer, never the candidate's
        time.sleep(0.6)
        status = _status(c)
    assert status["state"] == "running"  # a shadow changes nothing for users
    shadow = status["shadow"]
    assert shadow["sent"] == 120 and shadow["compared"] == 120, shadow
    assert shadow["dropped"] == 0 and shadow["failed"] == 0
    agreement = next(m for m in status["metrics"] if m["metric"] == "agreement")["agreement"]
    assert agreement["n"] == 120 and agreement["mean"] < 0.2
    assert status["arms"]["treatment"]["requests"] == 120
    assert status["arms"]["treatment"]["p99_ms"] is not None


def test_shadow_drops_copies_beyond_its_bound_instead_of_queueing_them(
    tmp_path: pathlib.Path,
) -> None:
    treatment = save_classifier(tmp_path / "slow.onnx", slow=12)
    spec = _spec(tmp_path, treatment, kind="shadow", shadow={"max_in_flight": 1})
    rng = np.random.default_rng(4)
    import concurrent.futures

    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:

        def one(_: int) -> int:
            return c.post("/v2/models/clf/infer", json=_body(_rows(rng, 4))).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(200)))
        time.sleep(1.0)
        status = _status(c)
        metrics = c.get("/metrics").text
    assert set(codes) == {200}
    shadow = status["shadow"]
    # Copies of 4 rows never fit a bound of 1 row: every one is dropped, counted, and the
    # answered requests never waited for any.
    assert shadow["dropped"] == 200 and shadow["sent"] == 0, shadow
    assert (
        'modelscale_experiment_copies_total{experiment="clf-1-vs-2-shadow",model="clf",result="dropped"} 200.0'
        in metrics
    )


def test_ab_assigns_by_unit_header_and_joins_outcomes_by_unit_and_by_request_id(
    tmp_path: pathlib.Path,
) -> None:
    treatment = save_classifier(tmp_path / "treatment.onnx", nudge=1e-4)
    spec = _spec(
        tmp_path,
        treatment,
        kind="ab",
        unit="header:X-User-Id",
        metrics=["click", {"name": "revenue", "kind": "mean"}],
        min_units=20,
    )
    rng = np.random.default_rng(5)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        seen: dict[str, set[str]] = {}
        ids: dict[str, str] = {}
        for i in range(400):
            user = f"user-{i % 100}"
            r = c.post("/v2/models/clf/infer", json=_body(_rows(rng)), headers={"X-User-Id": user})
            assert r.status_code == 200
            seen.setdefault(user, set()).add(r.headers["x-modelscale-arm"])
            ids[user] = r.headers["x-request-id"]
        # The same user always gets the same arm; users split about evenly.
        assert all(len(a) == 1 for a in seen.values())
        treated = [u for u, a in seen.items() if a == {"treatment"}]
        assert 25 <= len(treated) <= 75
        # Clicks: every treated user clicks, no control user does (by unit);
        # revenue by request id.
        items = [{"unit": u, "metric": "click", "value": 1} for u in treated]
        items += [{"id": ids[u], "metric": "revenue", "value": 2.5} for u in seen]
        r = c.post("/v2/models/clf/outcome", json={"items": items})
        assert r.status_code == 200 and r.json() == {"accepted": len(items)}, r.text
        # A request without the header is assigned by request, and counted.
        r = c.post("/v2/models/clf/infer", json=_body(_rows(rng)))
        assert r.status_code == 200 and "x-modelscale-arm" in r.headers
        time.sleep(0.6)
        status = _status(c)
    click = next(m for m in status["metrics"] if m["metric"] == "click")["comparison"]
    assert click["control"]["total"] == 0 and click["treatment"]["total"] == len(treated)
    assert status["decision"] == "treatment wins", status
    revenue = next(m for m in status["metrics"] if m["metric"] == "revenue")["comparison"]
    # Per unit, units without outcomes counting 0: the request without a header is a unit of
    # its own with no revenue.
    totals = revenue["control"]["total"] + revenue["treatment"]["total"]
    assert totals == pytest.approx(2.5 * 100)
    assert revenue["control"]["n"] + revenue["treatment"]["n"] == 101
    assert status["missing_unit"] == 1
    assert status["step_units"]["control"] + status["step_units"]["treatment"] == 101
    assert status["srm"] is not None and not status["srm"]["flagged"]


def test_outcomes_and_actions_refuse_bad_input_with_the_reason_and_keep_nothing(
    tmp_path: pathlib.Path,
) -> None:
    treatment = save_classifier(tmp_path / "treatment.onnx", nudge=1e-4)
    spec = _spec(
        tmp_path,
        treatment,
        kind="ab",
        unit="parameter:user",
        unit_required=True,
        metrics=["click"],
    )
    rng = np.random.default_rng(6)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        r = c.post("/v2/models/clf/infer", json=_body(_rows(rng)))
        assert r.status_code == 400 and "send the parameters.user" in r.json()["error"]
        r = c.post("/v2/models/clf/infer", json=_body(_rows(rng), user={"a": 1}))
        assert r.status_code == 400 and "parameters.user must be a string" in r.json()["error"]
        ok = c.post("/v2/models/clf/infer", json=_body(_rows(rng), "req-1", user="u1"))
        assert ok.status_code == 200 and ok.headers["x-request-id"] == "req-1"

        def outcome(body: Any) -> httpx.Response:
            return c.post("/v2/models/clf/outcome", json=body)

        bad = {
            "unknown metric": (
                {"id": "req-1", "metric": "clicks", "value": 1},
                400,
                "outcome metrics are: click",
            ),
            "not a number": (
                {"id": "req-1", "metric": "click", "value": "yes"},
                400,
                "value must be a number",
            ),
            "both keys": (
                {"id": "req-1", "unit": "u1", "metric": "click", "value": 1},
                400,
                "one of id",
            ),
            "no value": ({"id": "req-1", "metric": "click"}, 400, "value is missing"),
            "unknown field": (
                {"id": "req-1", "metric": "click", "value": 1, "x": 1},
                400,
                "not an outcome field",
            ),
            "unknown id": (
                {"id": "nope", "metric": "click", "value": 1},
                404,
                "is not one this server assigned",
            ),
            "one bad item": (
                {
                    "items": [
                        {"id": "req-1", "metric": "click", "value": 1},
                        {"id": "req-1", "metric": "click", "value": None},
                    ]
                },
                400,
                "items[1].value must be a number",
            ),
        }
        for why, (body, code, text) in bad.items():
            r = outcome(body)
            assert r.status_code == code and text in r.json()["error"], (why, r.text)
        for raw in (b"{not json", b'{"id": "req-1", "metric": "click", "value": 1e999}'):
            r = c.post(
                "/v2/models/clf/outcome", content=raw, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400 and "not JSON" in r.json()["error"], r.text
        assert c.post("/v2/models/nope/outcome", json={}).status_code == 404
        assert _status(c)["outcomes"]["accepted"] == 0  # nothing kept from a bad body
        r = c.post("/v2/models/clf/experiment", json={"action": "pause"})
        assert r.status_code == 400 and "stop, promote, rollback" in r.json()["error"]
        assert c.put("/v2/models/clf/experiment").status_code == 405
        r = c.post("/v2/models/clf/experiment", json={"action": "stop"})
        assert r.status_code == 200 and r.json()["state"] == "stopped"
        r = c.post("/v2/models/clf/experiment", json={"action": "promote"})
        assert r.status_code == 409 and "nothing to promote" in r.json()["error"]
        # Stopped: everyone gets the control.
        arms = {
            c.post("/v2/models/clf/infer", json=_body(_rows(rng), user=f"u{i}")).headers[
                "x-modelscale-arm"
            ]
            for i in range(30)
        }
        assert arms == {"control"}


def test_a_restarted_server_resumes_the_canary_where_the_knowledge_base_has_it(
    tmp_path: pathlib.Path,
) -> None:
    treatment = save_classifier(tmp_path / "treatment.onnx", nudge=1e-4)
    spec = _spec(
        tmp_path,
        treatment,
        kind="canary",
        ramp=[10, 40, 70, 100],
        min_units=30,
        step_min_units=30,
        step_min_s=0,
    )
    rng = np.random.default_rng(7)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        status, _ = _drive(c, rng, lambda s: s["step"] >= 1)
    assert status["state"] == "running" and status["treatment_share"] == pytest.approx(0.4)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        again = _status(c)
        r = c.post("/v2/models/clf/experiment", json={"action": "rollback"})
        assert r.status_code == 200 and r.json()["state"] == "rolled_back"
    assert again["step"] == 1 and again["treatment_share"] == pytest.approx(0.4)
    assert again["events"][-1]["event"] == "resumed"
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        final = _status(c)
        arms = {
            c.post("/v2/models/clf/infer", json=_body(_rows(rng))).headers["x-modelscale-arm"]
            for _ in range(20)
        }
    assert final["state"] == "rolled_back" and arms == {"control"}


def test_feedback_labels_give_accuracy_per_arm(tmp_path: pathlib.Path) -> None:
    treatment = save_classifier(tmp_path / "wrong.onnx", wrong=True)
    spec = _spec(
        tmp_path,
        treatment,
        monitor=True,
        kind="ab",
        metrics=["accuracy"],
        guardrails=["errors"],
        min_units=20,
    )
    rng = np.random.default_rng(8)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        for i in range(200):
            x = _rows(rng)
            r = c.post("/v2/models/clf/infer", json=_body(x, f"r{i}"))
            assert r.status_code == 200
            time.sleep(0.002)
            fb = c.post(
                "/v2/models/clf/feedback", json={"id": f"r{i}", "label": int(predict(x)[0])}
            )
            assert fb.status_code == 200, fb.text
        time.sleep(0.6)
        status = _status(c)
    acc = next(m for m in status["metrics"] if m["metric"] == "accuracy")["comparison"]
    assert acc["control_mean"] == pytest.approx(1.0) and acc["treatment_mean"] < 0.3
    assert acc["control"]["n"] + acc["treatment"]["n"] == 200
    assert status["decision"] == "control wins"


def test_experiment_cli_shows_status_and_acts(tmp_path: pathlib.Path) -> None:
    treatment = save_classifier(tmp_path / "treatment.onnx", nudge=1e-4)
    spec = _spec(tmp_path, treatment, kind="ab", metrics=["click"], min_units=20)
    rng = np.random.default_rng(9)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        for _ in range(100):
            c.post("/v2/models/clf/infer", json=_body(_rows(rng)))
        time.sleep(0.6)
        shown = invoke("experiment", "status", server.url, "clf")
        as_json = invoke("experiment", "status", server.url, "clf", "--json")
        promoted = invoke("experiment", "promote", server.url, "clf")
        again = invoke("experiment", "promote", server.url, "clf")
        unknown = invoke("experiment", "status", server.url, "nope")
    assert shown.exit_code == 0, shown.output
    for text in ("clf-1-vs-2-ab", "control", "treatment", "p99", "errors", "click", "continue"):
        assert text in shown.stdout, (text, shown.stdout)
    import json

    assert json.loads(as_json.stdout)["kind"] == "ab"
    assert promoted.exit_code == 0 and "promoted" in promoted.stdout
    assert again.exit_code == 2 and "has finished (promoted)" in again.output
    assert unknown.exit_code == 2 and "no model named 'nope'" in unknown.output


def test_a_server_without_experiments_lists_none(tmp_path: pathlib.Path) -> None:
    control = save_classifier(tmp_path / "control.onnx")
    spec = DeploymentSpec.from_dict(
        {
            "models": {"clf": {"versions": {"1": {"path": str(control)}}}},
            "log": {"enabled": False},
        }
    )
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        r = c.get("/v2/experiments")
        assert r.status_code == 200 and r.json() == {"experiments": []}
        assert c.post("/v2/experiments").status_code == 405
        r = c.get("/v2/models/clf/experiment")
        assert r.status_code == 404 and r.json()["error"], r.text


def test_agreement_compares_the_named_outputs_only(tmp_path: pathlib.Path) -> None:
    treatment = save_classifier(tmp_path / "t.onnx", nudge=0.001)
    bad = _spec(tmp_path, treatment, kind="canary", compare=["embedding"])
    with (
        pytest.raises(ServerError, match=r"experiment.compare .*'embedding'.*outputs are: probs"),
        start_server(bad),
    ):
        pass
    spec = _spec(tmp_path, treatment, kind="canary", compare=["probs"], ramp=[50, 100])
    rng = np.random.default_rng(2)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        status, _ = _drive(c, rng, lambda s: s["shadow"]["compared"] >= 40)
    assert status["shadow"]["compared"] >= 40 and status["state"] == "running"
