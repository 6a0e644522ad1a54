"""The front's CPU per request of one checkout against another's, on the same machine the same hour.

Runs under whatever ``modelscale`` the interpreter imports (this checkout, or another one put first
with ``PYTHONPATH=OTHER/src``), using only names every version since the first front benchmark
has: the digits example on 2 replicas x 1 thread, batch 8 / 5 ms, no objective, Poisson load at
150, 300 and 1,000 req/s for 6 s each, the front process's CPU (user + system, psutil) divided by
the requests answered.

    git worktree add /tmp/old e3bfbec
    PYTHONPATH=/tmp/old/src .venv/bin/python bench/front_regression.py   # the older front
    .venv/bin/python bench/front_regression.py                           # this one

Run them back to back on a quiet machine and compare the two lines: machines of this kind differ
by 2x or more between sessions, so only a pair measured together says anything.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import psutil

from modelscale.config import DeploymentSpec
from modelscale.examples import build_example
from modelscale.loadgen import LoadOptions, run_load
from modelscale.model import ModelArtifact
from modelscale.model.inputs import InputChoice, make_inputs
from modelscale.serve import start_server

RATES = (150, 300, 1000)


def main() -> None:
    path = build_example("digits").model_path
    art = ModelArtifact.load(path, name="digits")
    npz = pathlib.Path(tempfile.mkdtemp()) / "inputs.npz"
    np.savez(npz, **make_inputs(art.signature, batch=1, choice=InputChoice()))
    spec = DeploymentSpec.single(
        path, name="digits", replicas=2, threads=1, max_batch=8, max_wait_ms=5
    )
    with start_server(spec) as server:
        front = psutil.Process(server.pid)
        run_load(
            server.url, model="digits", options=LoadOptions(rate=300, duration_s=2, inputs=npz)
        )
        out = []
        for rate in RATES:
            t0 = front.cpu_times()
            opts = LoadOptions(rate=rate, duration_s=6, inputs=npz, pattern="poisson", warmup_s=0)
            ok = run_load(server.url, model="digits", options=opts).overall.ok
            t1 = front.cpu_times()
            cpu_ms = (t1.user - t0.user + t1.system - t0.system) * 1000
            out.append(f"{rate} req/s: {cpu_ms / max(ok, 1):.3f} ms")
    print("front CPU per request:", "; ".join(out))


if __name__ == "__main__":
    main()
