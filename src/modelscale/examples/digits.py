"""The "digits" example: a small CNN trained on scikit-learn's bundled 8x8 handwritten digits.

Real data, no download, a few seconds to train: a model with a labelled held-out split, so accuracy
guards (compression, A/B) can be exercised on something that is not random.

Files: ``digits.onnx`` (input ``pixels`` float32 [batch, 1, 8, 8] in [0, 1], output ``logits``
[batch, 10]), ``digits_eval.npz`` (the held-out split: ``pixels``, ``labels``, ``index``),
``digits_calib.npz`` (calibration inputs drawn from the training split: ``pixels``, ``index``).
``index`` holds row numbers in ``sklearn.datasets.load_digits()``.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from modelscale.examples.common import (
    import_torch,
    run_onnx,
    save_npz,
    single_thread,
)
from modelscale.model.torch_export import export_torch
from modelscale.progress import OnProgress, report

__all__ = [
    "CALIB_SIZE",
    "DESCRIPTION",
    "EVAL_FRACTION",
    "FILES",
    "SCALING_FRACTIONS",
    "SCALING_WIDTHS",
    "SEED",
    "build",
    "cache_inputs",
    "make_model",
    "scaling_runs",
]

DESCRIPTION = "Small CNN on scikit-learn's 8x8 handwritten digits (1797 images, 10 classes)"
FILES = {
    "model": "digits.onnx",
    "eval": "digits_eval.npz",
    "calib": "digits_calib.npz",
    # The held-out inputs are what live traffic to this model looks like.
    "sample": "digits_eval.npz",
}
SEED = 0
EVAL_FRACTION = 0.25
CALIB_SIZE = 256
SCALING_WIDTHS = (0.25, 0.5, 1.0, 2.0)
"""Widths of the scaling study: 2.6k to 151k parameters."""
SCALING_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
"""Shares of the training split each width is trained on (nested subsets)."""
_EPOCHS = 20
_BATCH = 64
_STEPS = 5


def cache_inputs() -> dict[str, str]:
    """The library versions a build depends on (part of its cache key)."""
    import sklearn

    torch = import_torch()
    return {"torch": torch.__version__, "sklearn": sklearn.__version__}


def make_model(width: float = 1.0) -> Any:
    """The untrained network: two 3x3 convolutions, a max-pool and a two-layer head (38k params
    at ``width`` 1; every layer's channels and units scale with ``width``)."""
    torch = import_torch()
    nn = torch.nn
    c1, c2, hidden = (max(1, round(n * width)) for n in (16, 32, 64))
    return nn.Sequential(
        nn.Conv2d(1, c1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 4 * 4, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels scaled to [0, 1] and a stratified train/eval split of row indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    train_idx, eval_idx = train_test_split(
        np.arange(len(labels)), test_size=EVAL_FRACTION, stratify=labels, random_state=SEED
    )
    return pixels, labels, np.sort(train_idx), np.sort(eval_idx)


def _train(model: Any, pixels: np.ndarray, labels: np.ndarray, torch: Any) -> float:
    """Adam with a cosine schedule; returns the last epoch's mean training loss."""
    x = torch.from_numpy(pixels)
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=_EPOCHS)
    shuffle = torch.Generator().manual_seed(SEED)
    model.train()
    epoch_loss = float("nan")
    for _ in range(_EPOCHS):
        order = torch.randperm(len(x), generator=shuffle)
        total = 0.0
        for start in range(0, len(x), _BATCH):
            batch = order[start : start + _BATCH]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        schedule.step()
        epoch_loss = total / len(x)
    model.eval()
    return epoch_loss


def build(dest: pathlib.Path, *, on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Train, export and evaluate the digits model into ``dest``; return its metadata.

    Args:
        dest: An empty folder to write the files into.
        on_progress: Told as each step starts.

    Returns:
        Metadata for ``meta.json``; the accuracy is measured with ONNX Runtime on the eval split.
    """
    torch = import_torch()
    report(on_progress, "Loading digits", 0, _STEPS)
    pixels, labels, train_idx, eval_idx = _split()
    calib_idx = np.sort(
        np.random.default_rng(SEED).choice(train_idx, size=CALIB_SIZE, replace=False)
    )

    report(on_progress, "Training", 1, _STEPS)
    # A forked RNG: seeding must not change the random stream of the code that called us.
    with single_thread(torch), torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = make_model()
        train_loss = _train(model, pixels[train_idx], labels[train_idx], torch)

        report(on_progress, "Exporting to ONNX", 2, _STEPS)
        model_path = dest / FILES["model"]
        export_torch(
            model,
            (torch.from_numpy(pixels[eval_idx[:2]]),),
            model_path,
            input_names=["pixels"],
            output_names=["logits"],
        )

    report(on_progress, "Writing eval and calibration sets", 3, _STEPS)
    save_npz(dest / FILES["eval"], pixels=pixels[eval_idx], labels=labels[eval_idx], index=eval_idx)
    save_npz(dest / FILES["calib"], pixels=pixels[calib_idx], index=calib_idx)

    report(on_progress, "Evaluating with ONNX Runtime", 4, _STEPS)
    (logits,) = run_onnx(model_path, {"pixels": pixels[eval_idx]}, ["logits"])
    accuracy = float((logits.argmax(axis=1) == labels[eval_idx]).mean())
    report(on_progress, "Done", _STEPS, _STEPS)
    return {
        "torch_param_count": sum(p.numel() for p in model.parameters()),
        "test_accuracy": accuracy,
        "train_loss": train_loss,
        "train_count": len(train_idx),
        "eval_count": len(eval_idx),
        "calib_count": len(calib_idx),
        "inputs": [{"name": "pixels", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}],
        "seed": SEED,
        "epochs": _EPOCHS,
    }


def scaling_runs(
    path: pathlib.Path,
    *,
    widths: tuple[float, ...] = SCALING_WIDTHS,
    fractions: tuple[float, ...] = SCALING_FRACTIONS,
    on_progress: OnProgress | None = None,
) -> pathlib.Path:
    """Train the network at each width on each share of the training split; write the runs.

    A small scaling study, real training runs for ``modelscale laws fit``: one row per (width,
    share) with ``params``, ``tokens`` (training images seen: images x epochs) and ``loss``
    (cross-entropy on the held-out split, in nats). Same seed, schedule and epochs for every run;
    the subsets are nested, so more data only adds images. Takes about a minute on one core.

    Returns:
        ``path``, a CSV.
    """
    torch = import_torch()
    pixels, labels, train_idx, eval_idx = _split()
    order = np.random.default_rng(SEED).permutation(train_idx)
    x_eval = torch.from_numpy(pixels[eval_idx])
    y_eval = torch.from_numpy(labels[eval_idx])
    rows: list[tuple[int, int, float, float, float]] = []
    total = len(widths) * len(fractions)
    with single_thread(torch), torch.random.fork_rng(devices=[]):
        for w in widths:
            for f in fractions:
                report(
                    on_progress, f"training width {w:g} on {f:.1%} of the data", len(rows), total
                )
                idx = np.sort(order[: max(10, round(len(order) * f))])
                torch.manual_seed(SEED)
                model = make_model(w)
                _train(model, pixels[idx], labels[idx], torch)
                with torch.no_grad():
                    loss = torch.nn.functional.cross_entropy(model(x_eval), y_eval).item()
                params = sum(p.numel() for p in model.parameters())
                rows.append((params, len(idx) * _EPOCHS, loss, w, f))
    report(on_progress, "Done", total, total)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["params,tokens,loss,width,data_share"]
    lines += [f"{n},{d},{loss:.6f},{w:g},{f:g}" for n, d, loss, w, f in rows]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
