from __future__ import annotations

import numpy as np

from modelscale.model import count_rows, take_rows


def test_rows_follow_each_batch_axis_and_skip_scalars() -> None:
    arrays = {
        "sr": np.array(16000),
        "state": np.zeros((2, 5, 3)),
        "x": np.arange(10).reshape(5, 2),
    }
    axes = {"state": 1}
    assert count_rows(arrays, axes) == 5
    taken = take_rows(arrays, np.array([4, 0]), axes)
    assert taken["sr"] is arrays["sr"]
    assert taken["state"].shape == (2, 2, 3)
    assert taken["x"].tolist() == [[8, 9], [0, 1]]
    assert take_rows(arrays, slice(0, 3), axes)["state"].shape == (2, 3, 3)
    assert count_rows({"sr": np.array(1)}) == 1  # nothing batched: one example
