"""The container image a plan's Kubernetes manifests run: its Dockerfile and how to build it.

``emit(plan, "k8s", out)`` writes the Dockerfile beside k8s.yaml and puts the model file there, so
that folder is the whole build context once a modelscale wheel joins it:

    pip wheel --no-deps --wheel-dir deploy/ /path/to/modelscale && docker build -t IMAGE deploy/

``image_build_command`` gives that line for the modelscale that runs: a wheel built from its
source folder when it was installed from one, else its release downloaded from the package index.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shlex
import shutil
import sys
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from modelscale.plan.results import PlanResult

__all__ = [
    "CONTAINER_MODEL_DIR",
    "SERVE_COMMAND",
    "dockerfile",
    "image_build_command",
    "place_model",
]

SERVE_COMMAND = ("modelscale", "serve", "--config", "/etc/modelscale/deploy.yaml")
"""The container command of the Kubernetes Deployment."""

CONTAINER_MODEL_DIR = "/models"
"""Where the image holds the model file."""

_PORT = 8000


def _source() -> pathlib.Path | None:
    """The folder this modelscale was installed from (pip's ``direct_url.json``); None when it
    came from the package index."""
    try:
        text = importlib.metadata.distribution("modelscale").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    url = urlsplit(str(json.loads(text).get("url", ""))) if text else None
    if url is None or url.scheme != "file":
        return None
    folder = pathlib.Path(unquote(url.path))
    return folder if (folder / "pyproject.toml").is_file() else None


def image_build_command(out_dir: str | pathlib.Path, image: str) -> str:
    """The shell command that builds ``image`` from ``out_dir`` (where ``emit(..., 'k8s')``
    wrote the Dockerfile and copied the model): a modelscale wheel into the folder, then the
    image."""
    out = shlex.quote(str(out_dir))
    source = _source()
    if source is not None:
        wheel = f"pip wheel --no-deps --wheel-dir {out} {shlex.quote(str(source))}"
    else:
        version = importlib.metadata.version("modelscale")
        wheel = f"pip download --no-deps --dest {out} modelscale=={version}"
    return f"{wheel} && docker build -t {shlex.quote(image)} {out}"


def dockerfile(plan: PlanResult, *, image: str = "modelscale:0.1.0", out_dir: str = "DIR") -> str:
    """A Dockerfile for the image the Kubernetes Deployment runs: modelscale from a wheel in the
    build context, the model at the path deploy.yaml names, ``modelscale serve`` as the command."""
    model_file = pathlib.PurePath(str(plan.model.get("path", "model.onnx"))).name
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (
        f"# The image {image} that k8s.yaml deploys, written by `modelscale plan` for "
        f"{plan.model.get('name')}.\n"
        "# Build it from this folder, which holds the model file and, once fetched, a modelscale "
        "wheel:\n"
        f"#   {image_build_command(out_dir, image)}\n"
        "# then push it where the cluster pulls images from (or load it: kind load docker-image,\n"
        "# minikube image load) and: kubectl apply -f k8s.yaml\n"
        f"FROM python:{python}-slim\n"
        "COPY modelscale-*.whl /tmp/\n"
        "RUN pip install --no-cache-dir /tmp/modelscale-*.whl && rm /tmp/modelscale-*.whl\n"
        f"COPY {model_file} {CONTAINER_MODEL_DIR}/{model_file}\n"
        "# The knowledge base (SQLite) goes under the working directory.\n"
        "WORKDIR /var/lib/modelscale\n"
        f"EXPOSE {_PORT}\n"
        f"CMD {json.dumps(list(SERVE_COMMAND))}\n"
    )


def place_model(source: pathlib.Path, dest: pathlib.Path) -> None:
    """Put the model file into the build context: a hard link where possible, else a copy."""
    if dest.exists() and os.path.samefile(source, dest):
        return
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
