"""Plots of a profile: throughput and p50 latency against batch size, one line per thread count."""

from __future__ import annotations

import pathlib

from modelscale.errors import InvalidInput
from modelscale.profile.api import ProfileResult

__all__ = ["plot_profile"]


def plot_profile(result: ProfileResult, path: str | pathlib.Path) -> pathlib.Path:
    """Write a PNG with throughput (left) and p50 latency (right) per batch size and thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(path)
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"The 'plot' path must name a .png file. Got {out}.", field="plot")
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[tuple[int, tuple[tuple[str, int], ...]], list] = {}
    for p in result.points:
        series.setdefault((p.threads, tuple(sorted(p.dims.items()))), []).append(p)
    for (threads, dims), pts in sorted(series.items()):
        pts.sort(key=lambda p: p.batch)
        label = f"{threads} thread{'s' if threads > 1 else ''}" + "".join(
            f", {k}={v}" for k, v in dims
        )
        batches = [p.batch for p in pts]
        ax_t.plot(batches, [p.items_per_s for p in pts], marker="o", label=label)
        ax_l.errorbar(
            batches,
            [p.p50_ms for p in pts],
            yerr=[[p.p50_ms - p.ci_low_ms for p in pts], [p.ci_high_ms - p.p50_ms for p in pts]],
            marker="o",
            capsize=3,
            label=label,
        )
    for ax, title, unit in ((ax_t, "throughput", "items/s"), (ax_l, "p50 latency (95% CI)", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result.model['name']} ({result.model['sha256'][:12]})")
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise InvalidInput(
            f"Cannot write the plot to {out}: {exc.strerror}.", field="plot"
        ) from exc
    finally:
        plt.close(fig)
    return out
