"""Which run an assessment compares with, which model it assesses, and whether the machine is
the baseline's.

``find_baseline`` takes the run named, or the model's oldest assess run; ``resolve_model`` takes an
ONNX file or a model the knowledge base knows by name; ``machine_change`` says when the baseline
ran on another machine, which makes a speed compared with its stored measurements meaningless.
"""

from __future__ import annotations

import pathlib

from modelscale.errors import InvalidInput
from modelscale.machine import machine_info
from modelscale.model import ModelArtifact
from modelscale.store import Run, Store

__all__ = ["find_baseline", "machine_change", "resolve_model"]


def resolve_model(
    ref: str | pathlib.Path, store: Store | None, *, name: str | None = None
) -> ModelArtifact:
    """The model ``ref`` names: an ONNX file, or a model version in the knowledge base (by name
    or sha256 prefix) whose file is still where it was registered."""
    path = pathlib.Path(ref).expanduser()
    if path.exists() or store is None:
        return ModelArtifact.load(path, name=name)
    known = store.model(str(ref))
    if known is not None and known.path and pathlib.Path(known.path).is_file():
        return ModelArtifact.load(known.path, name=name or known.name)
    where = (
        f" The knowledge base knows {known.name!r} at {known.path}, which is gone."
        if known is not None
        else ""
    )
    raise InvalidInput(
        f"The 'model' parameter of assess must be an ONNX file or the name of a model in the "
        f"knowledge base. Got {str(ref)!r} instead: no such file or model.{where} List models "
        "with `modelscale runs`.",
        field="model",
    )


def find_baseline(store: Store, artifact: ModelArtifact, run_id: int | None = None) -> Run | None:
    """The assess run to compare ``artifact`` with.

    ``run_id`` names it; otherwise the oldest assess run of this model version, else the oldest
    of any version with the same name. The oldest, not the latest: comparing each run with the one
    before would let a model lose a few percent a week forever without a flag. None when there is
    none yet: the assessment then becomes the baseline.
    """
    if run_id is None:
        for ref in (artifact.sha256, artifact.name):
            runs = [r for r in store.runs(model=ref, kind="assess") if r.status == "ok"]
            if runs:
                return runs[-1]
        return None
    try:
        run = store.run(run_id)
    except InvalidInput:
        raise InvalidInput(
            f"The 'baseline' parameter of assess must be the id of an assess run in the "
            f"knowledge base. Got {run_id} instead: no run has that id. List assess runs with "
            "`modelscale runs --kind assess`, or leave it out to use the model's first.",
            field="baseline",
        ) from None
    if run.kind != "assess" or "evidence" not in run.results:
        raise InvalidInput(
            f"The 'baseline' parameter of assess must be the id of an assess run. Got {run_id} "
            f"instead, a run of kind {run.kind}. List assess runs with `modelscale runs --kind "
            "assess`, or leave it out to use the model's first.",
            field="baseline",
        )
    return run


def machine_change(baseline: Run | None) -> str | None:
    """One line when ``baseline`` ran on another CPU model or core count than this machine."""
    if baseline is None or not baseline.machine:
        return None
    now = machine_info().to_dict()
    keys = ("cpu_model", "usable_cores")
    then = {k: baseline.machine.get(k) for k in keys}
    if all(then[k] == now.get(k) for k in keys):
        return None
    return (
        f"The baseline ran on another machine ({then['cpu_model']}, {then['usable_cores']} "
        f"cores; now {now.get('cpu_model')}, {now.get('usable_cores')}): a speed compared with "
        "its stored measurements is inconclusive."
    )
