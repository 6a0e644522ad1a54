"""What the example builders share: small helpers."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from modelscale.model import import_torch

__all__ = [
    "import_torch",
    "run_onnx",
    "save_npz",
    "single_thread",
]


@contextlib.contextmanager
def single_thread(torch: Any) -> Iterator[None]:
    """Run torch on one thread for a while, so training gives the same bits every time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_onnx(
    path: pathlib.Path, feeds: dict[str, np.ndarray], outputs: list[str]
) -> list[np.ndarray]:
    """Run a model a builder wrote, through the Engine like every other measurement."""
    from modelscale.runtime import Engine

    return Engine(path).run(feeds, outputs)


def save_npz(path: pathlib.Path, **arrays: Any) -> None:
    """Write arrays to an uncompressed ``.npz`` (loads fast; the arrays are small)."""
    with path.open("wb") as f:
        np.savez(f, **arrays)
