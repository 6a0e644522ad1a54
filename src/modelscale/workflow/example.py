"""Compress a built-in example with the settings its data calls for (the demo's compress step)."""

from __future__ import annotations

import os

from modelscale.compress import CompressResult, ProgressCallback, compress
from modelscale.errors import InvalidInput
from modelscale.examples import ExampleBuild
from modelscale.profile import MeasureOptions

__all__ = ["compress_example"]


def compress_example(
    example: ExampleBuild,
    *,
    out: str | os.PathLike[str] | None = None,
    max_drop: float = 0.01,
    batch: int = 8,
    measure: MeasureOptions | None = None,
    progress: ProgressCallback | None = None,
) -> CompressResult:
    """Run ``compress`` on a built example: digits with its labels and calibration split, MiniLM
    on its sample sentences (fidelity of ``sentence_embedding``, eval rows split for calibration).

    Args:
        example: What ``build_example`` returned.
        out: Folder for the chosen model and its summary.
        max_drop: The tolerance (accuracy points for digits, mean cosine for MiniLM).
        batch: Batch size for throughput.
        measure: Timing options (default: the search's).
        progress: Called as ``progress(step, done, total)``.

    Returns:
        The search's result; record it with ``record_search``.
    """
    if example.eval_path is not None:
        return compress(
            example.model_path,
            example.eval_path,
            calibration=example.calib_path,
            max_drop=max_drop,
            batch=batch,
            out=out,
            measure=measure,
            progress=progress,
        )
    if example.sample_path is None:
        raise InvalidInput(f"Example {example.name!r} has no data to evaluate on.", field="example")
    return compress(
        example.model_path,
        example.sample_path,
        output="sentence_embedding" if example.name == "minilm" else None,
        max_drop=max_drop,
        batch=batch,
        out=out,
        measure=measure,
        progress=progress,
    )
