"""Entry point of a profiling worker process: reads its jobs as a pickle on stdin, writes points back.

Run as ``python -m modelscale.profile._worker`` by ``run_sweep``; not a public interface.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback

from modelscale.errors import ModelscaleError
from modelscale.profile.sweep import measure_jobs

__all__ = ["main"]


def main() -> None:
    """Measure the jobs given on stdin; stdout carries only pickled messages."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the channel

    def send(message: tuple[str, object]) -> None:
        pickle.dump(message, channel)
        channel.flush()

    try:
        path, engine_options, jobs, choice, signature, measure = pickle.load(sys.stdin.buffer)
        measure_jobs(
            path,
            engine_options,
            jobs,
            choice,
            signature,
            measure,
            emit=lambda p: send(("point", p)),
            isolated=True,
        )
        send(("done", None))
    except ModelscaleError as exc:
        send(("error", f"{type(exc).__name__}: {exc}"))
    except BaseException as exc:  # report, never leave the parent waiting
        send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


if __name__ == "__main__":
    main()
