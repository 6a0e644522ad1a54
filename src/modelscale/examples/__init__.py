"""Built-in real examples, built offline: a digits classifier and the MiniLM sentence encoder.

``build_example("digits")`` trains and exports a small CNN on scikit-learn's digits in seconds;
``build_example("minilm")`` exports all-MiniLM-L6-v2 from its packaged weights. Both are cached.
``digits_scaling_runs(path)`` trains the digits CNN at four widths on four shares of its data: real
training runs for a scaling-law fit.
"""

from __future__ import annotations

from modelscale.examples.build import (
    EXAMPLES,
    ExampleBuild,
    build_example,
    cached_example,
    example_cache_dir,
    list_examples,
)
from modelscale.examples.digits import scaling_runs as digits_scaling_runs

__all__ = [
    "EXAMPLES",
    "ExampleBuild",
    "build_example",
    "cached_example",
    "digits_scaling_runs",
    "example_cache_dir",
    "list_examples",
]
