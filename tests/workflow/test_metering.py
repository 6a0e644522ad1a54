"""Other processes' CPU during a probe window: a busy neighbour counts, the server's own processes
do not."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
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
    """Processes started in groups of their own (``start_new_session``), each killed whole at
    the end: a 'server' killed alone would leave its spinning replica running."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait()


def _edge(meters: list[OtherCpuMeter], index: int, *, start: bool) -> None:
    for meter in meters:
        meter(ProgressEvent("probe", detail=WindowEdge(index, f"probe {index}", start=start)))


def test_a_busy_neighbour_counts_and_the_server_s_replicas_do_not(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    server = subprocess.Popen([sys.executable, "-c", _SERVER], start_new_session=True)
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    spawn.extend([server, idle])
    time.sleep(0.5)  # the server's replica has started and spins
    # The same window seen by two meters: one knows the spinning replica as the server's, to the
    # other it is a neighbour. Whatever else runs on this machine counts the same in both.
    as_server, as_neighbour = OtherCpuMeter(server.pid), OtherCpuMeter(idle.pid)
    assert as_server.available
    before = _tree_cpu_s(server.pid)
    _edge([as_server, as_neighbour], 1, start=True)
    time.sleep(1.5)
    _edge([as_server, as_neighbour], 1, start=False)
    spun = _tree_cpu_s(server.pid) - before
    (mine,), (theirs,) = as_server.windows, as_neighbour.windows
    assert mine.label == "probe 1" and mine.window == 1 and mine.seconds >= 1.5
    # The replica ran (how much depends on what else this machine runs); exactly its CPU is what
    # tells the two apart: a neighbour's CPU counts, the server's does not.
    assert spun > 0.1
    assert theirs.cores * theirs.seconds - mine.cores * mine.seconds == pytest.approx(
        spun, abs=0.1 + 0.1 * spun
    ), (mine, theirs, spun)


def _tree_cpu_s(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in (root, *root.children(recursive=True)))


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
