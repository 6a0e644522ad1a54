"""The shapes of synthetic requests: what fills a model's dynamic axes besides the batch.

V2 model metadata marks every dynamic axis -1 and names none. Axis 0 of an input is the batch (each
request has ``batch`` rows); any other dynamic axis (a sequence length, an image size) needs a
value, and a guess is worse than none: sending 1 token to a text model measures a model nobody
runs. Per input, the first of these that gives one wins:

1. ``shapes``: the input's whole shape (``--shape input_ids=1,32``), axis 0 set to the batch;
2. ``dims``: symbolic dim values (``--dim seq=32``), placed by the model's signature, read from
   the file the knowledge base registered under the sha256 the server publishes;
3. the model's latest profile in the knowledge base: the shapes it measured at the first value of
   each dim it swept (``profile --dim seq=32,128`` -> seq=32).

Without any of them the load test refuses to start and says which input and axis need a value.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelscale.errors import InvalidInput, ModelscaleError
from modelscale.model import ModelArtifact, Signature
from modelscale.store import Run, Store

__all__ = ["RequestShapes", "StoreSource", "request_shapes"]

StoreSource = Store | Callable[[], Store | None] | None
"""The knowledge base, or a function that opens it when it is needed (None if it cannot)."""


@dataclass(frozen=True)
class RequestShapes:
    """The shape of each input in one synthetic request, and where its dynamic sizes came from.

    Attributes:
        shapes: Per input, the whole shape of one request (axis 0 = the batch when dynamic).
        dims: Symbolic dim values used, by name (empty when the sizes came from whole shapes or
            the dims' names are not known).
        source: Where the sizes of the dynamic axes came from: 'model metadata' (there were
            none), '--shape', '--dim', 'profile run N', or several joined by ' + '.
    """

    shapes: dict[str, tuple[int, ...]]
    dims: dict[str, int] = field(default_factory=dict)
    source: str = "model metadata"

    def describe(self) -> str:
        """'input_ids 1x32, attention_mask 1x32 (seq=32, from profile run 7)'."""
        shapes = ", ".join(
            f"{name} {'x'.join(map(str, shape)) or 'scalar'}" for name, shape in self.shapes.items()
        )
        named = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        return f"{shapes} ({named + ', ' if named else ''}from {self.source})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestShapes:
        """Read ``to_dict``'s form back (from a stored load run)."""
        return cls(
            shapes={str(k): tuple(int(d) for d in v) for k, v in data["shapes"].items()},
            dims={str(k): int(v) for k, v in (data.get("dims") or {}).items()},
            source=str(data.get("source", "?")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the load run stores it."""
        return {
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "dims": dict(self.dims),
            "source": self.source,
        }


def _meta_shapes(meta: Mapping[str, Any]) -> dict[str, list[int]]:
    return {str(t["name"]): [int(d) for d in t["shape"]] for t in meta["inputs"]}


def _check_given_shapes(
    meta_shapes: Mapping[str, list[int]], shapes: Mapping[str, Sequence[int]]
) -> None:
    for name, shape in shapes.items():
        if name not in meta_shapes:
            raise InvalidInput(
                f"The 'shapes' parameter names input {name!r}, which the model does not have. "
                f"Expected one of: {', '.join(meta_shapes)}.",
                field="shapes",
            )
        want = meta_shapes[name]
        if len(shape) != len(want):
            raise InvalidInput(
                f"The 'shapes' parameter gives input {name!r} {len(shape)} dims; the model "
                f"expects {len(want)} ({_meta_text(want)}).",
                field="shapes",
            )
        for axis, (got, fixed) in enumerate(zip(shape, want, strict=True)):
            if axis > 0 and fixed >= 0 and got != fixed:
                raise InvalidInput(
                    f"The 'shapes' parameter sets input {name!r} axis {axis} to {got}; the model "
                    f"fixes it at {fixed} ({_meta_text(want)}).",
                    field="shapes",
                )


def _meta_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"


def _open_axes(current: Mapping[str, list[int]]) -> list[tuple[str, int]]:
    return [(n, a) for n, s in current.items() for a, d in enumerate(s) if a > 0 and d < 0]


def _signature(meta: Mapping[str, Any], store: Store | None) -> Signature | None:
    """The served model's signature, from the file the knowledge base knows by its sha256."""
    sha = (meta.get("parameters") or {}).get("sha256")
    if not sha or store is None:
        return None
    try:
        mv = store.model(str(sha))
    except ModelscaleError:
        return None
    if mv is None or mv.sha256 != sha or not mv.path or not pathlib.Path(mv.path).is_file():
        return None
    try:
        artifact = ModelArtifact.load(mv.path)
    except ModelscaleError:
        return None
    return artifact.signature if artifact.sha256 == sha else None


def _latest_profile(meta: Mapping[str, Any], store: Store | None) -> Run | None:
    sha = (meta.get("parameters") or {}).get("sha256")
    if not sha or store is None:
        return None
    try:
        runs = store.runs(model=str(sha), kind="profile", limit=1)
    except ModelscaleError:
        return None
    return runs[0] if runs and runs[0].model_version == sha else None


def _place_dims(
    current: dict[str, list[int]],
    sig: Signature,
    dims: Mapping[str, int],
) -> bool:
    """Set every open axis the signature names after a dim in ``dims``; True if any was set."""
    placed = False
    for name, axis in _open_axes(current):
        try:
            spec = sig.input(name)
        except KeyError:
            continue
        shape = spec.shape or ()
        if axis < len(shape) and isinstance(shape[axis], str) and shape[axis] in dims:
            current[name][axis] = int(dims[str(shape[axis])])
            placed = True
    return placed


def _place_shapes(
    current: dict[str, list[int]], shapes: Mapping[str, Sequence[int]], names: set[str]
) -> bool:
    """Fill the open axes of the inputs in ``names`` from whole ``shapes``; True if any was set."""
    placed = False
    for name, axis in _open_axes(current):
        shape = shapes.get(name)
        if name in names and shape is not None and axis < len(shape) and int(shape[axis]) > 0:
            current[name][axis] = int(shape[axis])
            placed = True
    return placed


def _refuse(current: Mapping[str, list[int]], sig: Signature | None, profiled: bool) -> None:
    missing = _open_axes(current)
    if not missing:
        return
    parts, names = [], []
    for name, axis in missing:
        dim = None
        if sig is not None:
            try:
                shape = sig.input(name).shape or ()
                dim = shape[axis] if axis < len(shape) else None
            except KeyError:
                dim = None
        if isinstance(dim, str):
            names.append(dim)
            parts.append(f"{name!r} axis {axis} ('{dim}')")
        else:
            parts.append(f"{name!r} axis {axis}")
    if names:
        example = f"'dims' (e.g. {names[0]}=32)"
    else:
        # Without the dims' names (no model file in the knowledge base) only whole shapes work.
        example = f"'shapes' (e.g. {missing[0][0]}=D0,D1,...)"
    later = "" if profiled else ", or profile the model first (load then uses its latest profile's)"
    raise InvalidInput(
        f"Input {', '.join(parts)} of the served model is dynamic, and the load test will not "
        f"guess its size. Expected a value: give {example}, real inputs in 'inputs'{later}.",
        field="dims",
    )


def request_shapes(
    meta: Mapping[str, Any],
    *,
    batch: int = 1,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    store: StoreSource = None,
) -> RequestShapes:
    """The shape of each input of one synthetic request to the model ``meta`` describes.

    Args:
        meta: The server's V2 model metadata.
        batch: Rows per request (axis 0 where it is dynamic).
        dims: Symbolic dim values by name; their axes come from the model's signature.
        shapes: Whole shapes by input name.
        store: The knowledge base: the model file's signature (for ``dims``) and its latest
            profile (for axes nothing else sets). None: neither. A function is called only
            when the knowledge base is needed.

    Raises:
        InvalidInput: A dynamic axis nothing gives a size; a dim or shape that does not fit.
    """
    dims = dict(dims or {})
    given = {k: list(v) for k, v in (shapes or {}).items()}
    metas = _meta_shapes(meta)
    _check_given_shapes(metas, given)
    current = {
        n: [batch if a == 0 and d < 0 else d for a, d in enumerate(s)] for n, s in metas.items()
    }
    sources: list[str] = []
    opened: list[Store | None] = []

    def kb() -> Store | None:
        if not opened:
            opened.append(store() if callable(store) else store)
        return opened[0]

    if _place_shapes(current, given, set(given)):
        sources.append("--shape")
    sig: Signature | None = None
    if dims or _open_axes(current):
        sig = _signature(meta, kb())
    used: dict[str, int] = {}
    if dims:
        if sig is None:
            raise InvalidInput(
                f"The 'dims' parameter ({', '.join(dims)}) needs the names of the model's dims, "
                "which the server does not publish, and the knowledge base has no file for the "
                "model it serves (profile that file first). Expected whole shapes instead: "
                f"'shapes' (e.g. {next(iter(metas))}=D0,D1,...).",
                field="dims",
            )
        known = set(sig.symbolic_dims())
        unknown = [d for d in dims if d not in known]
        if unknown:
            raise InvalidInput(
                f"The 'dims' parameter names {', '.join(map(repr, unknown))}, which the model "
                f"does not have. Expected one of: {', '.join(sorted(known)) or 'none'}.",
                field="dims",
            )
        if _place_dims(current, sig, dims):
            sources.append("--dim")
        used.update(dims)
    profile = _latest_profile(meta, kb()) if _open_axes(current) else None
    if profile is not None:
        placed = False
        pdims = {
            str(k): int(v[0])
            for k, v in (profile.params.get("dims") or {}).items()
            if v and str(k) not in dims
        }
        if sig is not None and _place_dims(current, sig, pdims):
            used.update({k: v for k, v in pdims.items() if k in sig.symbolic_dims()})
            placed = True
        pshapes = profile.params.get("shapes") or {}
        open_names = {n for n, _ in _open_axes(current)} - set(given)
        placed |= _place_shapes(current, pshapes, open_names)
        flops = profile.results.get("flops") or []
        if flops:
            measured = flops[0].get("input_shapes") or {}
            placed |= _place_shapes(current, measured, open_names)
            if sig is None:
                used.update({k: v for k, v in pdims.items()})
        if placed:
            sources.append(f"profile run {profile.id}")
    _refuse(current, sig, profile is not None)
    return RequestShapes(
        shapes={n: tuple(s) for n, s in current.items()},
        dims=used,
        source=" + ".join(sources) or "model metadata",
    )
