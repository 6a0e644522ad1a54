"""Burn rates, multi-window alerts, their replay scores, and where alerts are delivered."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from modelscale.config import SloSpec
from modelscale.observe import ALERT_PAIRS, WINDOWS_S, AlertDispatcher, BurnCounter, SloTracker
from modelscale.observe.replay import outage, replay, steady
from modelscale.store import open_store

T0 = 1_700_000_000


def test_burn_counter_matches_a_brute_force_count_over_every_window() -> None:
    rng = np.random.default_rng(7)
    counter = BurnCounter()
    # Irregular traffic over four days, with gaps longer than the short windows and late events.
    times = np.sort(rng.uniform(0, 4 * 86_400, 20_000))
    times = np.concatenate([times[times < 86_400], times[times > 90_000]])
    bad = rng.random(len(times)) < 0.05
    for t, b in zip(times, bad, strict=True):
        counter.add(T0 + t, bool(b))
        late = rng.random() < 0.05
        if late:  # a request that finished earlier, recorded now
            counter.add(T0 + max(0.0, t - 3), True)
            times = np.append(times, max(0.0, t - 3))
            bad = np.append(bad, True)
    now = int(T0 + times.max())
    counter.advance(now)
    for w in WINDOWS_S:
        inside = (np.floor(T0 + times) > now - w) & (np.floor(T0 + times) <= now)
        assert counter.window(w) == (int(inside.sum()), int((inside & bad).sum())), w
    # Moving the clock past the longest window empties every window.
    counter.advance(now + max(WINDOWS_S) + 5)
    assert all(counter.window(w) == (0, 0) for w in WINDOWS_S)


def test_a_workbook_outage_pages_in_about_52_seconds_and_resets_once() -> None:
    # Six hours of good traffic (so the 6 h window is full) at 5 requests/s, then 10 minutes of
    # total failure: 14.4x over 1 h needs 0.0144 h of failure, 52 s.
    traffic = outage(rate_per_s=5, before_s=6 * 3_600, outage_s=600, after_s=3_600, seed=3)
    result = replay(traffic, SloSpec(availability=0.999), sli="availability")
    pages = [a for a in result.alerts if a.severity == "page"]
    first = pages[0]
    assert first.pair == "1h/5m" and first.state == "firing"
    assert 45 <= result.detection_s[0] <= 60
    assert result.recall == 1.0 and result.precision == 1.0
    # Each page fires and resolves once: no flapping.
    for pair in {a.pair for a in pages}:
        states = [a.state for a in pages if a.pair == pair]
        assert states == ["firing", "resolved"], (pair, states)
    assert result.reset_s and result.reset_s[0] < 15 * 60


def test_a_day_at_ten_requests_a_minute_with_0_1_percent_errors_never_pages() -> None:
    for seed in range(3):
        traffic = steady(rate_per_s=10 / 60, duration_s=86_400, error_share=0.001, seed=seed)
        result = replay(traffic, SloSpec(availability=0.999))
        assert result.pages == 0, [a.message for a in result.alerts]


def test_a_trickle_of_failures_cannot_page_below_min_events() -> None:
    # One request every 10 minutes, every one failing: 6 an hour, under min_events (100).
    traffic = steady(rate_per_s=1 / 600, duration_s=86_400, error_share=1.0)
    assert replay(traffic, SloSpec(availability=0.999)).pages == 0
    # The same failures at a rate that fills the window page.
    busy = steady(rate_per_s=1, duration_s=3_600, error_share=1.0)
    assert replay(busy, SloSpec(availability=0.999)).pages > 0


def test_latency_objective_counts_slow_answers_and_ignores_client_errors() -> None:
    slo = SloSpec.model_validate({"latency": {"p99_ms": 50, "objective": 0.99}, "min_events": 10})
    tracker = SloTracker({"m": slo})
    for i in range(200):
        tracker.observe("m", T0 + i * 0.1, 200, 10.0)
    for i in range(100):
        tracker.observe("m", T0 + 20 + i * 0.1, 404, 500.0)  # client errors: not counted
    (view,) = tracker.burn_rates(T0 + 31)
    assert view["requests"]["5m"] == 200 and view["burn_rates"]["5m"] == 0.0
    events = []
    for i in range(200):
        tracker.observe("m", T0 + 31 + i * 0.1, 200, 80.0)  # slower than 50 ms
        events += tracker.evaluate(T0 + 31 + i * 0.1)
    (view,) = tracker.burn_rates(T0 + 52)
    assert view["burn_rates"]["5m"] == pytest.approx(0.5 / 0.01)
    assert {(e.sli, e.severity, e.pair) for e in events} >= {("latency", "page", "1h/5m")}


def test_alert_pairs_are_the_workbook_table() -> None:
    assert [(p.severity, p.burn_rate, p.name) for p in ALERT_PAIRS] == [
        ("page", 14.4, "1h/5m"),
        ("page", 6.0, "6h/30m"),
        ("ticket", 1.0, "3d/6h"),
    ]


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, object]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()


def _fire() -> list:  # type: ignore[type-arg]
    tracker = SloTracker({"digits": SloSpec(availability=0.999)})
    events = []
    for i in range(3_000):
        tracker.observe("digits", T0 + i * 0.1, 503 if i > 2_500 else 200, 1.0)
        events += tracker.evaluate(T0 + i * 0.1)
    assert events
    return events


def test_alerts_reach_a_webhook_and_the_knowledge_base(webhook, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, received = webhook
    db = f"sqlite:///{tmp_path / 'kb.db'}"
    dispatcher = AlertDispatcher(
        webhooks=[url], store_url=db, model_versions=lambda model: "ab" * 32
    )
    events = _fire()
    dispatcher.send(events)
    dispatcher.close()
    assert [r["pair"] for r in received] == [e.pair for e in events]
    assert received[0]["state"] == "firing" and received[0]["model"] == "digits"
    assert received[0]["source"] == "modelscale" and "burns its error budget" in str(
        received[0]["message"]
    )
    store = open_store(db)
    runs = store.runs(kind="slo")
    store.close()
    assert len(runs) == len(events)
    assert runs[-1].results["alert"]["sli"] == "availability"
    assert dispatcher.deliveries["webhook", "ok"] == len(events)


def test_an_unreachable_webhook_is_retried_counted_and_never_blocks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dispatcher = AlertDispatcher(
        webhooks=["http://127.0.0.1:9/unreachable"],
        retries=2,
        backoff_s=0.01,
        timeout_s=1,
        record=False,
    )
    events = _fire()
    started = time.perf_counter()
    dispatcher.send(events)
    assert time.perf_counter() - started < 0.5  # delivery happens in its own thread
    dispatcher.close()
    assert dispatcher.deliveries["webhook", "failed"] == len(events)
    assert dispatcher.deliveries["webhook", "retried"] == 2 * len(events)
    assert dispatcher.deliveries["log", "ok"] == len(events)


def test_a_young_server_does_not_page_on_its_first_couple_of_errors() -> None:
    tracker = SloTracker({"m": SloSpec(availability=0.999)})
    events = []
    for i in range(150):  # 150 requests in the first 15 minutes, 2 of them failed
        tracker.observe("m", T0 + i * 6, 503 if i in (120, 140) else 200, 1.0)
        events += tracker.evaluate(T0 + i * 6)
    assert events == []
    for i in range(150, 160):  # ten failures in a row: now it is evidence
        tracker.observe("m", T0 + i * 6, 503, 1.0)
        events += tracker.evaluate(T0 + i * 6)
    assert any(e.severity == "page" and e.state == "firing" for e in events)
