"""The one exception tree of modelscale.

    ModelscaleError                 anything modelscale raises on purpose
    ├── InvalidInput                a value, option or file the user gave is wrong (CLI exit 2, HTTP 4xx)
    │   └── ModelLoadError          a model file is missing, not ONNX, truncated or not loadable
    ├── MissingDependency           an optional extra is not installed (names the pip command)
    ├── StoreError                  the knowledge base cannot be opened, written or read
    ├── RuntimeFailure              ONNX Runtime failed while running a model that did load
    └── ServerError                 the model server failed (later waves)

    ModelscaleWarning               warnings of our own; the test suite turns them into errors

Every error carries enough context (a path, a field, an expected value) to print one line that says what
was wrong, what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "InvalidInput",
    "MissingDependency",
    "ModelLoadError",
    "ModelscaleError",
    "ModelscaleWarning",
    "RuntimeFailure",
    "ServerError",
    "StoreError",
    "invalid_parameter",
]


class ModelscaleError(Exception):
    """Base of every error modelscale raises on purpose."""


class InvalidInput(ModelscaleError, ValueError):
    """A value, option or file given by the user is not what was expected."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ModelLoadError(InvalidInput):
    """A model file is missing, is not ONNX, is truncated, or ONNX Runtime cannot load it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, field="model")
        self.path = path


class MissingDependency(ModelscaleError, ImportError):
    """An optional extra is needed; the message names the pip command that installs it."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"This needs the '{package}' package, which is not installed. "
            f'Install it with: pip install "modelscale[{extra}]"'
        )
        self.package = package
        self.extra = extra


class StoreError(ModelscaleError):
    """The knowledge base cannot be opened, written or read."""


class RuntimeFailure(ModelscaleError):
    """ONNX Runtime failed while running a model that loaded."""


class ServerError(ModelscaleError):
    """The model server failed."""


class ModelscaleWarning(UserWarning):
    """A warning raised by modelscale itself."""


def invalid_parameter(name: str, expected: str, got: object, *, where: str = "") -> InvalidInput:
    """Build the one message shape used for bad parameters.

    Example: "The 'batch' parameter of profile must be an integer >= 1. Got 0 instead."
    """
    of = f" of {where}" if where else ""
    return InvalidInput(
        f"The '{name}' parameter{of} must be {expected}. Got {got!r} instead.", field=name
    )
