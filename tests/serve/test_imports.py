"""A replica process loads the model runtime, not the front's web stack."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_a_replica_imports_none_of_the_fronts_modules() -> None:
    code = (
        "import sys, modelscale.serve.replica\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'pydantic', 'prometheus_client') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # The package's names still resolve, on first use.
    import modelscale.serve as serve

    assert callable(serve.start_server) and "start_server" in dir(serve)
    with pytest.raises(AttributeError, match="no_such_name"):
        serve.no_such_name  # noqa: B018
