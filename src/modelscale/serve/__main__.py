"""``python -m modelscale.serve --spec SPEC.json --fd FD``: a server process started by ServerProcess."""

from __future__ import annotations

import argparse
import json
import socket
import sys

from modelscale.config import DeploymentSpec
from modelscale.errors import ModelscaleError
from modelscale.serve.runner import run_server

__all__ = ["main"]


def main() -> int:
    """Serve the spec on the inherited socket until SIGTERM; exit 0 after the drain, 2 on errors."""
    parser = argparse.ArgumentParser(prog="python -m modelscale.serve")
    parser.add_argument("--spec", required=True, help="DeploymentSpec as JSON")
    parser.add_argument("--fd", type=int, required=True, help="bound listening socket")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    try:
        with open(args.spec, encoding="utf-8") as f:
            spec = DeploymentSpec.from_dict(json.load(f), source=args.spec)
        run_server(spec, sock=socket.socket(fileno=args.fd), log_level=args.log_level)
    except ModelscaleError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
