"""Export the runs of a real demo's knowledge base as a test fixture for reports and scorecards.

    scripts/demo && .venv/bin/python -m tests.data.make_demo_runs .modelscale/modelscale.db

writes ``tests/data/demo-runs.json.gz``: every model version and run the demo recorded, as stored
(results written by the real profile, compress, load, monitor, experiment, plan and privacy code).
Reports must keep rendering runs that older releases stored, so the fixture is refreshed only when
the demo gains a kind of evidence, not whenever a result grows a field.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib

from sqlalchemy import create_engine, text

__all__ = ["main"]

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "demo-runs.json.gz"


def main() -> None:
    """Read the SQLite knowledge base named on the command line; write the fixture."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("db", type=pathlib.Path)
    args = parser.parse_args()
    engine = create_engine(f"sqlite:///{args.db.resolve()}")
    with engine.connect() as conn:
        versions = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM model_versions"))]
        runs = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM runs ORDER BY id"))]
    for row in versions + runs:
        for key in ("meta", "params", "results", "machine"):
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
    doc = {"model_versions": versions, "runs": runs}
    OUT.write_bytes(gzip.compress(json.dumps(doc, default=str).encode(), mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes: {len(runs)} runs)")


if __name__ == "__main__":
    main()
