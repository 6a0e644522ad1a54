"""Built-in real examples, built offline: a digits classifier and the MiniLM sentence encoder.

``build_example("digits")`` trains and exports a small CNN on scikit-learn's digits in seconds;
``build_example("minilm")`` exports all-MiniLM-L6-v2 from its packaged weights. Both are cached.
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

__all__ = [
    "EXAMPLES",
    "ExampleBuild",
    "build_example",
    "cached_example",
    "example_cache_dir",
    "list_examples",
]
