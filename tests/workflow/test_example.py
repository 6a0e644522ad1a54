"""Compressing a built-in example with the settings its data calls for."""

from __future__ import annotations

import pytest

from modelscale.compress import CompressOptions
from modelscale.examples import ExampleBuild, build_example
from modelscale.workflow import compress_example
from tests.compress.conftest import FAST


@pytest.fixture(scope="module")
def digits() -> ExampleBuild:
    return build_example("digits")


def test_compress_example_uses_the_examples_own_data(digits: ExampleBuild) -> None:
    result = compress_example(digits, options=CompressOptions(measure=FAST))
    assert result.metric == "accuracy" and result.eval_rows == 450
    assert result.calibration_source == str(digits.calib_path)
