"""``monitor run --logs DIR``: the windows of a whole fleet, from the files its servers wrote.

Each server writes every closed window's sketches (and the labels that joined its requests) to
``<log dir>/monitor/model=<name>/version=<v>/<start>-<server>.json``. Sketches merge exactly, so
the windows of several servers that fall in the same period (``window_s``, aligned to the epoch
as the servers align theirs) combine into the window the fleet served, tested against the
baseline as one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import orjson
import pyarrow.fs as pafs

from modelscale.errors import InvalidInput
from modelscale.monitor.baseline import Baseline
from modelscale.monitor.domain import domain_test
from modelscale.monitor.drift import DriftOptions, compare_profiles, describe
from modelscale.monitor.sketch import Profile
from modelscale.monitor.windows import WindowResult, accuracy_of
from modelscale.observe import LogLocation, parse_since
from modelscale.progress import OnProgress, report
from modelscale.result import Result

__all__ = ["MonitorRun", "monitor_logs", "window_files"]


@dataclass(frozen=True)
class MonitorRun(Result):
    """The windows of a log directory, merged across servers and tested."""

    kind: ClassVar[str] = "drift"

    source: str
    windows: tuple[WindowResult, ...]
    files: int
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "files": self.files,
            "windows": [w.to_dict() for w in self.windows],
            "params": self.params,
        }


def window_files(location: LogLocation, model: str | None = None) -> list[str]:
    """The window files under a log root, sorted."""
    root = f"{location.root}/monitor"
    if model is not None:
        root += f"/model={model}"
    try:
        info = location.filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InvalidInput(f"cannot read {location.display}: {exc}", field="logs") from None
    return sorted(
        i.path
        for i in info
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".json")
        and not i.base_name.startswith(".")
    )


def monitor_logs(
    logs: str,
    *,
    baseline_of: Callable[[str, str, int | None], Baseline | None],
    model: str | None = None,
    window_s: float = 300.0,
    since: str | None = None,
    options: DriftOptions | None = None,
    domain: bool = True,
    accuracy_drop: float = 0.05,
    on_progress: OnProgress | None = None,
) -> MonitorRun:
    """Merge the window files under ``logs`` by model, version and period; test each.

    ``baseline_of(model, version, baseline_run)`` finds the baseline a window is tested against.
    """
    if not window_s > 0:
        raise InvalidInput(f"--window must be > 0 seconds; got {window_s}", field="window")
    location = LogLocation.of(logs, field="logs")
    after = parse_since(since)
    files = window_files(location, model)
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for i, path in enumerate(files):
        with location.filesystem.open_input_stream(path) as f:
            try:
                d = orjson.loads(f.read())
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(
                    f"{path} is not a monitor window file: {exc}", field="logs"
                ) from None
        if after is not None and d["end"] < after.timestamp():
            continue
        period = math.floor(d["start"] / window_s) * window_s
        groups[d["model"], d["version"], period].append(d)
        report(on_progress, "monitor: reading windows", i + 1, len(files))
    out = []
    opt = options or DriftOptions()
    for (name, version, _period), parts in sorted(groups.items()):
        base = baseline_of(name, version, parts[0].get("baseline_run"))
        if base is None:
            raise InvalidInput(
                f"no baseline for {name} v{version} in the knowledge base; make one with "
                "`modelscale monitor baseline MODEL --data ref.npz`",
                field="baseline",
            )
        merged = Profile.from_dict(parts[0]["profile"])
        for p in parts[1:]:
            merged.merge(Profile.from_dict(p["profile"]))
        reference = base.reference()
        dom = None
        if (
            domain
            and merged.reservoir is not None
            and reference.reservoir is not None
            and merged.rows >= opt.min_rows
        ):
            dom = domain_test(reference.reservoir.rows, merged.reservoir.rows, alpha=opt.alpha)
        drift = compare_profiles(reference, merged, opt, domain=dom)
        preds = np.asarray([v for p in parts for v in p.get("predictions", [])])
        labels = np.asarray([v for p in parts for v in p.get("labels", [])])
        scores = base.feature_plan().scores_output()
        conf = None
        if scores is not None:
            sk = merged.features.get(f"{scores}.confidence")
            if sk is not None and sk.count:  # type: ignore[union-attr]
                # The estimate needs per-row confidences; the sketch's quantiles stand in for
                # them (one value per 1/1000 of the rows), weighted to the window's row count.
                qs = np.asarray(sk.kll.get_quantiles(np.linspace(0.0005, 0.9995, 1000).tolist()))  # type: ignore[union-attr]
                conf = np.repeat(qs, max(1, sk.count // len(qs)))  # type: ignore[union-attr]
        accuracy = accuracy_of(preds, labels, conf, base, accuracy_drop)
        verdict = drift.verdict
        if accuracy.get("drop") and verdict in ("ok", "quality"):
            verdict = "accuracy"
        out.append(
            WindowResult(
                model=name,
                version=version,
                start=min(p["start"] for p in parts),
                end=max(p["end"] for p in parts),
                verdict=verdict,
                drift=drift.to_dict() | {"summary": describe(drift), "servers": len(parts)},
                accuracy=accuracy,
                baseline_run=base.run_id,
                params={"window_s": window_s, "servers": len(parts)},
            )
        )
    return MonitorRun(
        source=location.display,
        windows=tuple(out),
        files=len(files),
        params={
            "logs": logs,
            "model": model,
            "window_s": window_s,
            "since": since,
            "alpha": opt.alpha,
            "min_effect": opt.min_effect,
        },
    )
