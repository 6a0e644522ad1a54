"""The Ray Serve config ``plan --emit ray`` writes runs under ``serve run`` and answers V2 clients."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import pathlib
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import yaml

from modelscale.loadgen import LoadOptions, run_load
from modelscale.machine import machine_info
from modelscale.plan import (
    BatchPolicy,
    PlanOptions,
    emit,
    fit_service_model,
    load_catalog,
    plan_capacity,
)
from modelscale.runtime.engine import Engine
from tests.plan.conftest import linear_points
from tests.serve.servers import free_port, serve_run, wait_ready

pytestmark = [pytest.mark.ray, pytest.mark.e2e, pytest.mark.slow]
pytest.importorskip("ray.serve", reason="needs the ray extra")
tritonclient_http = pytest.importorskip("tritonclient.http")


@pytest.fixture
def ray_config(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """The Ray config ``plan --machine local --emit ray`` writes for the MLP, on a free port."""
    local = dataclasses.replace(machine_info(), usable_cores=2, memory_bytes=16 * 2**30)
    plan = plan_capacity(
        fit_service_model(linear_points(), source="synthetic"), rps=200.0, p99_ms=40.0,
        catalog=load_catalog(), machine=local,
        options=PlanOptions(
            sim_requests=5_000, policies=(BatchPolicy(1), BatchPolicy(4)), machine="local"
        ),
        model={"name": "mlp", "sha256": "cd" * 32, "path": str(mlp_path)},
        replica_bytes=200 * 2**20,
    )  # fmt: skip
    path = emit(plan, "ray", tmp_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(data)  # Ray's own schema for `serve deploy` accepts it
    dep = data["applications"][0]["deployments"][1]  # the model's; [0] is the front
    assert dep["num_replicas"] * dep["ray_actor_options"]["num_cpus"] <= 2  # fits this machine
    data["http_options"] = {"host": "127.0.0.1", "port": free_port()}
    # The plan's 40 ms objective makes the front shed bursts it predicts would miss it, and on
    # this 2-core box a Ray batch takes ~10 ms there and back: the bursts of 8 concurrent
    # requests below would be shed. Shedding is tested on every backend in test_backends.py.
    data["applications"][0]["args"]["deployment"]["models"]["mlp"].pop("slo")
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_emitted_ray_config_serves_v2_clients(
    ray_config: pathlib.Path, mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    port = yaml.safe_load(ray_config.read_text())["http_options"]["port"]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    engine = Engine(mlp_path)
    with serve_run(ray_config, log) as proc:
        wait_ready(url, proc, log, "/v2/models/mlp/ready")
        local = threading.local()  # a tritonclient client is not to be shared between threads

        def connect() -> tritonclient_http.InferenceServerClient:
            if not hasattr(local, "client"):
                local.client = tritonclient_http.InferenceServerClient(
                    f"127.0.0.1:{port}", connection_timeout=10, network_timeout=30
                )
            return local.client

        client = connect()
        assert client.is_server_live() and client.is_model_ready("mlp")
        meta = client.get_model_metadata("mlp")
        assert meta["inputs"][0]["name"] == "x" and meta["parameters"]["max_batch_size"] == 4

        def infer(rows: int, binary: bool) -> None:
            x = np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)
            inp = tritonclient_http.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = tritonclient_http.InferRequestedOutput("y", binary_data=binary)
            result = connect().infer("mlp", [inp], outputs=[out])
            np.testing.assert_allclose(
                result.as_numpy("y"), engine.run({"x": x})[0], rtol=1e-5, atol=1e-5
            )

        infer(1, binary=False)
        infer(3, binary=True)
        # Concurrent requests of mixed sizes are batched by the front and split back correctly.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: infer(1 + i % 3, binary=i % 2 == 0), range(48)))

        bad = urllib.request.Request(
            f"{url}/v2/models/mlp/infer",
            data=b'{"inputs": [{"name": "z", "shape": [1, 16], "datatype": "FP32", '
            b'"data": [' + b",".join([b"0"] * 16) + b"]}]}",
            headers={"content-type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 400 and b"unknown input 'z'" in err.value.read()
        assert client.is_model_ready("mlp")  # still serving after the bad request
        # modelscale's own load generator drives it like a modelscale server.
        load = run_load(url, model="mlp", options=LoadOptions(rate=100, duration_s=1.5))
        assert load.overall.ok == load.overall.sent > 100 and not load.overall.errors
