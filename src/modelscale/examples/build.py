"""Build the built-in examples once, cache them, and hand out where their files are.

A build lives in ``<cache_dir>/examples/<name>-<key>``, where ``key`` hashes the builder's source
and the library versions the build depends on, so a changed builder or an upgraded torch builds
anew. A build is made in a temporary folder beside its final place, with ``meta.json`` written
last, and moved into place with one ``os.rename``: a folder under its final name is always
complete. When two processes build at once, the first rename wins and the other process uses the
winner's files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import tempfile
import time
import types
from collections.abc import Mapping
from importlib import metadata
from typing import Any, ClassVar

from modelscale.config import get_settings
from modelscale.errors import InvalidInput
from modelscale.examples import digits, minilm
from modelscale.progress import OnProgress
from modelscale.result import Result

__all__ = [
    "EXAMPLES",
    "ExampleBuild",
    "build_example",
    "cached_example",
    "example_cache_dir",
    "list_examples",
]

_META_FILE = "meta.json"
# A build takes seconds to a minute; a staging folder this old belongs to a killed process.
_ABANDONED_AFTER_S = 24 * 3600

# name -> builder module; each has DESCRIPTION, FILES, build(dest, on_progress=...) and cache_inputs().
_BUILDERS: Mapping[str, types.ModuleType] = types.MappingProxyType(
    {"digits": digits, "minilm": minilm}
)
# Sources whose change changes what a build produces, besides the builder module itself.
_SHARED_SOURCES = (
    "modelscale.examples.common",
    "modelscale.examples.corpus",
    "modelscale.model.torch_export",
)

EXAMPLES: Mapping[str, str] = types.MappingProxyType(
    {name: module.DESCRIPTION for name, module in _BUILDERS.items()}
)
"""The built-in examples: name -> one-line description."""


@dataclasses.dataclass(frozen=True)
class ExampleBuild(Result):
    """Where a built example's files are.

    Attributes:
        name: The example's name, a key of ``EXAMPLES``.
        model_path: The ONNX model.
        eval_path: Labelled held-out data (``.npz``), or None for an example without labels.
        calib_path: Inputs for quantization calibration (``.npz``), disjoint from the eval data.
        sample_path: Inputs that look like live traffic (``.npz``), for profiling and load tests.
        meta: The contents of ``meta.json``: parameter count, accuracy, inputs, outputs, versions.
        cached: True when an existing build was reused and nothing was built by this call.
    """

    kind: ClassVar[str] = "example"

    name: str
    model_path: pathlib.Path
    eval_path: pathlib.Path | None
    calib_path: pathlib.Path | None
    sample_path: pathlib.Path | None
    meta: dict[str, Any]
    cached: bool


def list_examples() -> list[str]:
    """The names of the built-in examples, sorted."""
    return sorted(EXAMPLES)


def _builder(name: object) -> types.ModuleType:
    if not isinstance(name, str) or name not in _BUILDERS:
        raise InvalidInput(
            f"Unknown example {name!r}. Known examples: {', '.join(list_examples())}.", field="name"
        )
    return _BUILDERS[name]


def _cache_key(name: str, builder: types.ModuleType) -> str:
    digest = hashlib.sha256(name.encode())
    for module_name in (builder.__name__, *_SHARED_SOURCES):
        spec = importlib.util.find_spec(module_name)
        if spec is not None and spec.origin and os.path.isfile(spec.origin):
            digest.update(pathlib.Path(spec.origin).read_bytes())
    digest.update(json.dumps(builder.cache_inputs(), sort_keys=True).encode())
    return digest.hexdigest()[:12]


def example_cache_dir(name: str) -> pathlib.Path:
    """The folder a build of ``name`` is (or would be) cached in, for the installed versions."""
    builder = _builder(name)
    return get_settings().cache_dir / "examples" / f"{name}-{_cache_key(name, builder)}"


def _is_complete(folder: pathlib.Path) -> bool:
    return (folder / _META_FILE).is_file()


def cached_example(name: str) -> pathlib.Path | None:
    """The folder of the finished cached build of ``name``, or None if it is not built yet."""
    folder = example_cache_dir(name)
    return folder if _is_complete(folder) else None


def _writable_dir(path: pathlib.Path, what: str, *, fix: str, field: str) -> pathlib.Path:
    """Create ``path`` if needed and prove it takes files (permission bits do not bind root)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInput(f"Cannot write {what} to {path}: {reason}. {fix}", field=field) from exc
    return path


def _remove_abandoned(root: pathlib.Path) -> None:
    """Delete staging folders of builds that were killed long ago (a crash skips their cleanup)."""
    cutoff = time.time() - _ABANDONED_AFTER_S
    for folder in root.glob(".*.building"):
        with contextlib.suppress(OSError):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def _build_into_cache(
    name: str,
    builder: types.ModuleType,
    final: pathlib.Path,
    *,
    replace: bool,
    on_progress: OnProgress | None,
) -> None:
    root = _writable_dir(
        final.parent,
        "the example cache",
        fix="Point MODELSCALE_CACHE_DIR at a writable folder.",
        field="cache_dir",
    )
    _remove_abandoned(root)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".building", dir=root))
    try:
        started = time.perf_counter()
        meta = builder.build(staging, on_progress=on_progress)
        meta = {
            "name": name,
            "description": builder.DESCRIPTION,
            **meta,
            "files": {role: file for role, file in builder.FILES.items() if file},
            "model_bytes": (staging / builder.FILES["model"]).stat().st_size,
            "build_key": final.name.rsplit("-", 1)[1],
            "build_seconds": round(time.perf_counter() - started, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": {"modelscale": _modelscale_version(), **builder.cache_inputs()},
        }
        # Written last: its presence is what marks a build as finished.
        (staging / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _publish(staging, final, replace=replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: pathlib.Path, final: pathlib.Path, *, replace: bool) -> bool:
    """Move a finished build into place; False when a concurrent build got there first.

    A complete build already in place is kept unless ``replace``: another process may be reading
    its files right now. An incomplete folder (no meta.json) is always replaced.
    """
    if final.exists():
        if _is_complete(final) and not replace:
            return False
        # Renamed aside rather than deleted in place, so readers never see a half-deleted folder.
        aside = final.with_name(f".{final.name}.{os.getpid()}.{time.time_ns()}.old")
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(staging, final)
    except OSError:
        # Another process published between our check and our rename: its build is as good.
        if not _is_complete(final):
            raise
        return False
    return True


def _copy_out(source: pathlib.Path, out: pathlib.Path) -> None:
    """Copy a build's files into ``out``, each via a temporary name, meta.json last."""
    files = sorted((p for p in source.iterdir() if p.is_file()), key=lambda p: p.name == _META_FILE)
    for file in files:
        tmp = out / f".{file.name}.{os.getpid()}.tmp"
        try:
            shutil.copyfile(file, tmp)
            os.replace(tmp, out / file.name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InvalidInput(
                f"Cannot write the example to {out}: {exc.strerror or exc}.", field="out"
            ) from exc


def _modelscale_version() -> str:
    try:
        return metadata.version("modelscale")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_example(
    name: str,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    on_progress: OnProgress | None = None,
) -> ExampleBuild:
    """Build a built-in example, or reuse its cached build, and say where its files are.

    Args:
        name: One of ``EXAMPLES``.
        out_dir: Also copy the files into this folder (created if needed); the returned paths then
            point there.
        force: Build again even if a cached build exists (the new build replaces it).
        on_progress: Told as each build step starts.

    Returns:
        The paths of the model and its data, and the build's metadata.

    Raises:
        InvalidInput: ``name`` is not a known example, or ``out_dir`` or the cache is not
            writable.
        MissingDependency: The example needs torch (or transformers), which is not installed.
    """
    builder = _builder(name)
    out = None
    if out_dir is not None:
        out = _writable_dir(
            pathlib.Path(out_dir), "the example", fix="Choose a writable folder.", field="out"
        )
    final = example_cache_dir(name)
    cached = _is_complete(final) and not force
    if not cached:
        _build_into_cache(name, builder, final, replace=force, on_progress=on_progress)

    folder = final
    if out is not None and out.resolve() != final.resolve():
        _copy_out(final, out)
        folder = out
    meta = json.loads((folder / _META_FILE).read_text())
    files = {role: folder / file if file else None for role, file in builder.FILES.items()}
    return ExampleBuild(
        name=name,
        model_path=folder / builder.FILES["model"],
        eval_path=files["eval"],
        calib_path=files["calib"],
        sample_path=files["sample"],
        meta=meta,
        cached=cached,
    )
