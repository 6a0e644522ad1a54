"""Compress a built-in example with the settings its data calls for (the demo's compress step)."""

from __future__ import annotations

import dataclasses

from modelscale.compress import CompressOptions, CompressResult, compress
from modelscale.errors import InvalidInput
from modelscale.examples import ExampleBuild
from modelscale.progress import OnProgress

__all__ = ["compress_example"]


def compress_example(
    example: ExampleBuild,
    *,
    options: CompressOptions | None = None,
    on_progress: OnProgress | None = None,
) -> CompressResult:
    """Run ``compress`` on a built example: digits with its labels and calibration split, MiniLM
    on its sample sentences (fidelity of ``sentence_embedding``, eval rows split for calibration).

    Args:
        example: What ``build_example`` returned.
        options: The search's options; the example's own calibration set and evaluated output
            are filled in (the tolerance is in accuracy points for digits, mean cosine for
            MiniLM).
        on_progress: The search's progress.

    Returns:
        The search's result; record it with ``modelscale.workflow.record``.
    """
    o = options or CompressOptions()
    if example.eval_path is not None:
        o = dataclasses.replace(o, calibration=o.calibration or example.calib_path)
        return compress(example.model_path, example.eval_path, options=o, on_progress=on_progress)
    if example.sample_path is None:
        raise InvalidInput(f"Example {example.name!r} has no data to evaluate on.", field="example")
    if example.name == "minilm" and o.output is None:
        o = dataclasses.replace(o, output="sentence_embedding")
    return compress(example.model_path, example.sample_path, options=o, on_progress=on_progress)
