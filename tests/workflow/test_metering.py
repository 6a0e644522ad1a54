"""Other processes' CPU during a probe window: a busy neighbour counts, the server's own processes
do not."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from modelscale.loadgen import WindowEdge
from modelscale.progress import ProgressEvent
from modelscale.workflow import OtherCpuMeter
from modelscale.workflow.metering import machine_busy_s

pytestmark = pytest.mark.skipif(not pathlib.Path("/proc/stat").exists(), reason="Linux only")

_SPIN = "while True: pass"
# A 'server': an idle front whose replica child spins.
_SERVER = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {_SPIN!r}])\n"
    "try:\n"
    "    time.sleep(120)\n"
    "finally:\n"
    "    child.kill()\n"
)


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def _window(meter: OtherCpuMeter, index: int, seconds: float) -> float:
    meter(ProgressEvent("probe", detail=WindowEdge(index, f"probe {index}", start=True)))
    time.sleep(seconds)
    meter(ProgressEvent("probe", detail=WindowEdge(index, f"probe {index}", start=False)))
    (window,) = [w for w in meter.windows if w.window == index]
    assert window.label == f"probe {index}" and window.seconds >= seconds
    return window.cores


def test_a_busy_neighbour_counts_and_the_server_s_replicas_do_not(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    server = subprocess.Popen([sys.executable, "-c", _SERVER])
    spawn.append(server)
    time.sleep(0.5)  # its replica has started and spins
    meter = OtherCpuMeter(server.pid)
    assert meter.available
    quiet = _window(meter, 1, 1.5)
    spawn.append(subprocess.Popen([sys.executable, "-c", _SPIN]))  # a neighbour takes a core
    time.sleep(0.2)
    busy = _window(meter, 2, 1.5)
    # The replica spun a whole core in both windows and counts in neither; the neighbour does.
    assert busy > 0.5, (quiet, busy)
    assert busy - quiet > 0.4, (quiet, busy)


def test_other_events_are_ignored(spawn: list[subprocess.Popen[bytes]]) -> None:
    meter = OtherCpuMeter(os.getpid())
    meter(ProgressEvent("probe 1", 10, 100))
    meter(ProgressEvent("probe", detail=WindowEdge(7, "probe 7", start=False)))  # never started
    assert meter.windows == []


def test_busy_time_is_read_from_the_first_line(tmp_path: pathlib.Path) -> None:
    stat = tmp_path / "stat"
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal: interrupts and idle do not count.
    stat.write_text(f"cpu  {tick} {tick} {tick} 999999 50 70 80 {tick} 0 0\ncpu0 1 1 1 1\n")
    assert machine_busy_s(stat) == pytest.approx(4.0)
    stat.write_text("intr 1 2 3\n")
    assert machine_busy_s(stat) is None
    assert machine_busy_s(tmp_path / "missing") is None
