"""The public API is what ``modelscale.__all__`` says: complete, sorted, and importable."""

from __future__ import annotations
import __future__

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import modelscale


def isort_order(names: list[str]) -> list[str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then the rest, each alphabetical."""

    def key(name: str) -> tuple[int, str]:
        if name.isupper():
            return (0, name)
        return (1 if name[:1].isupper() else 2, name)

    return sorted(names, key=key)


def test_all_is_sorted_and_complete() -> None:
    assert modelscale.__all__ == isort_order(modelscale.__all__)
    for name in modelscale.__all__:  # the lazy exports all resolve
        assert getattr(modelscale, name) is not None, name
    public = {
        name
        for name, value in vars(modelscale).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
        and name not in ("TYPE_CHECKING", "Any")  # typing helpers of the lazy loader
    }
    kind = type(modelscale)
    public |= {n for n in vars(kind) if isinstance(getattr(kind, n), property)}
    public.add("__version__")
    assert public == set(modelscale.__all__)
    assert sorted(dir(modelscale)) == sorted(modelscale.__all__)


def test_compress_stays_the_function_when_its_subpackage_is_imported() -> None:
    code = (
        "import modelscale.compress.search, modelscale, sys; "
        "from modelscale import compress; "
        "print(callable(compress), compress is sys.modules['modelscale.compress.search'].compress, "
        "sys.modules['modelscale.compress'].__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "modelscale.compress"]


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        # The package alone: every export loads on first use.
        ("modelscale", ("scipy", "starlette", "sqlalchemy", "onnxruntime")),
        # A replica process loads the model runtime, not the front's web stack.
        ("modelscale.serve.replica", ("starlette", "uvicorn", "pydantic", "prometheus_client")),
    ],
)
def test_import_is_light_and_unknown_names_fail(module: str, absent: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print([m for m in {absent!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    package = importlib.import_module(module.rsplit(".replica", 1)[0])
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = package.nothing_here
    assert all(callable(getattr(package, name)) or name in dir(package) for name in package.__all__)


def test_every_module_declares_a_sorted_all_of_real_names() -> None:
    for info in pkgutil.walk_packages(modelscale.__path__, "modelscale."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        assert list(module.__all__) == isort_order(list(module.__all__)), (
            f"{info.name}.__all__ is not sorted"
        )
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.__all__ names {name}, which it lacks"
