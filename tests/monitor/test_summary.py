"""How reference tensors become a feature plan, and what the plan extracts from a batch."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from scipy.special import softmax
from sklearn.decomposition import PCA

from modelscale.errors import InvalidInput
from modelscale.monitor.sketch import CATEGORICAL, NUMERIC, CategoricalSketch, Profile
from modelscale.monitor.summary import FeaturePlan, TensorPlan

N = 300


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def only(plan: FeaturePlan, name: str) -> TensorPlan:
    found = [p for p in plan.tensors if p.tensor == name]
    assert len(found) == 1, [p.tensor for p in plan.tensors]
    return found[0]


def assert_projections(got: dict[str, np.ndarray], t: str, flat: np.ndarray, k: int) -> None:
    """The plan's pc1..pck equal scikit-learn's PCA of the reference rows, up to each sign."""
    want = PCA(n_components=k, svd_solver="full").fit(flat.astype(np.float64)).transform(flat)
    for i in range(k):
        col = got[f"{t}.pc{i + 1}"].astype(np.float64)
        sign = np.sign(col @ want[:, i])
        np.testing.assert_allclose(sign * col, want[:, i], atol=2e-3, err_msg=f"pc{i + 1}")


def tokens(seed: int, n: int = N, width: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded token ids (1..30,000, pad 0) and each row's length."""
    r = rng(seed)
    ids = r.integers(1, 30_001, (n, width))
    lengths = r.integers(3, width + 1, n)
    ids[np.arange(width)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


# --- which mode each tensor gets ----------------------------------------------------------


def test_a_float_per_row_is_a_scalar() -> None:
    x = rng().normal(size=N).astype(np.float32)
    plan = FeaturePlan.build({"x": x}, {})
    assert only(plan, "x").mode == "scalar"
    assert plan.kinds() == {"x": NUMERIC}
    num, cat, n = plan.extract({"x": x}, {})
    assert n == N and cat == {}
    np.testing.assert_array_equal(num["x"], x)


def test_a_few_floats_per_row_are_columns() -> None:
    x = rng().normal(size=(N, 5)).astype(np.float32)
    plan = FeaturePlan.build({"x": x}, {})
    p = only(plan, "x")
    assert (p.mode, p.columns) == ("columns", 5)
    assert list(plan.kinds()) == [f"x[{i}]" for i in range(5)]
    num, _, _ = plan.extract({"x": x}, {})
    for i in range(5):
        np.testing.assert_array_equal(num[f"x[{i}]"], x[:, i])


def test_a_long_vector_is_summarised_by_its_moments_and_principal_components() -> None:
    x = (rng().normal(size=(N, 100)) * np.linspace(0.2, 3.0, 100)).astype(np.float32)
    plan = FeaturePlan.build({"v": x}, {})
    p = only(plan, "v")
    assert p.mode == "vector" and len(p.pca_components) == 8 and not p.positions
    assert list(plan.kinds()) == ["v.mean", "v.std", "v.norm"] + [f"v.pc{i}" for i in range(1, 9)]
    num, _, _ = plan.extract({"v": x}, {})
    np.testing.assert_allclose(num["v.mean"], x.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(num["v.std"], x.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(num["v.norm"], np.linalg.norm(x, axis=1), rtol=1e-5)
    assert_projections(num, "v", x, 8)


def test_an_image_is_summarised_per_channel_and_by_principal_components() -> None:
    x = rng().normal(size=(N, 3, 8, 8)).astype(np.float32)
    x[:, 1] = x[:, 1] * 2 + 5
    plan = FeaturePlan.build({"img": x}, {})
    p = only(plan, "img")
    assert (p.mode, p.channels, len(p.pca_components)) == ("image", 3, 8)
    names = list(plan.kinds())
    for c in range(3):
        assert f"img.c{c}.mean" in names and f"img.c{c}.std" in names
    assert "img.c3.mean" not in names and "img.norm" in names and "img.pc8" in names
    num, _, _ = plan.extract({"img": x}, {})
    per = x.reshape(N, 3, -1).astype(np.float64)
    for c in range(3):
        np.testing.assert_allclose(num[f"img.c{c}.mean"], per[:, c].mean(axis=1), atol=1e-5)
        np.testing.assert_allclose(num[f"img.c{c}.std"], per[:, c].std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(num["img.norm"], np.linalg.norm(x.reshape(N, -1), axis=1), rtol=1e-5)
    assert_projections(num, "img", x.reshape(N, -1), 8)


def test_a_float_sequence_is_averaged_over_its_length() -> None:
    x = rng().normal(size=(N, 6, 16)).astype(np.float32)
    plan = FeaturePlan.build({"seq": x}, {})
    p = only(plan, "seq")
    assert p.mode == "sequence" and len(p.pca_mean) == 16
    num, _, _ = plan.extract({"seq": x}, {})
    avg = x.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(num["seq.mean"], avg.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(num["seq.std"], avg.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(num["seq.norm"], np.linalg.norm(x.reshape(N, -1), axis=1), rtol=1e-5)
    assert_projections(num, "seq", avg, 8)
    # A longer sequence of the same width is still projected (its mean has the same size).
    longer = rng(1).normal(size=(10, 9, 16)).astype(np.float32)
    num, _, _ = plan.extract({"seq": longer}, {})
    assert np.isfinite(num["seq.pc1"]).all()


def test_token_ids_give_length_padding_and_buckets_counted_per_token() -> None:
    ids, lengths = tokens(0)
    plan = FeaturePlan.build({"tok": ids}, {})
    p = only(plan, "tok")
    assert (p.mode, p.pad_id) == ("tokens", 0)
    assert p.vocab == int(ids.max()) + 1
    assert plan.kinds() == {
        "tok.length": NUMERIC,
        "tok.padding": NUMERIC,
        "tok.bucket": CATEGORICAL,
    }
    num, cat, n = plan.extract({"tok": ids}, {})
    assert n == N
    np.testing.assert_array_equal(num["tok.length"], lengths)
    np.testing.assert_allclose(num["tok.padding"], (40 - lengths) / 40, rtol=1e-6)
    values, rows = cat["tok.bucket"]
    assert rows == N and values.size == lengths.sum()
    real = np.concatenate([ids[i, : lengths[i]] for i in range(N)])
    want = np.bincount(real * 32 // p.vocab, minlength=32)
    np.testing.assert_array_equal(np.bincount(values, minlength=32), want)
    # In a profile the bucket feature counts every token but keeps N rows.
    prof = Profile.empty(plan.kinds())
    prof.update(num, cat, rows=n)
    sk = prof.features["tok.bucket"]
    assert isinstance(sk, CategoricalSketch)
    assert (sk.n, sk.items) == (N, int(lengths.sum()))


def test_zeros_and_ones_are_a_mask_counted_per_row() -> None:
    m = rng().integers(0, 2, (N, 40))
    plan = FeaturePlan.build({"mask": m}, {})
    assert only(plan, "mask").mode == "mask"
    assert plan.kinds() == {"mask.ones": NUMERIC}
    num, _, _ = plan.extract({"mask": m}, {})
    np.testing.assert_array_equal(num["mask.ones"], m.sum(axis=1))


def test_a_few_integer_values_are_codes() -> None:
    codes = rng().choice([3, 7, 11, 40], N)
    plan = FeaturePlan.build({"code": codes}, {})
    assert only(plan, "code").mode == "codes"
    assert plan.kinds() == {"code": CATEGORICAL}
    _, cat, _ = plan.extract({"code": codes}, {})
    values, rows = cat["code"]
    assert rows is None
    np.testing.assert_array_equal(values, codes)


def test_classifier_scores_give_the_class_and_its_softmax_confidence() -> None:
    logits = (rng().normal(size=(N, 10)) * 3).astype(np.float32)
    plan = FeaturePlan.build({}, {"out": logits})
    assert only(plan, "out").mode == "scores"
    assert plan.kinds() == {"out.class": CATEGORICAL, "out.confidence": NUMERIC}
    assert plan.scores_output() == "out"
    num, cat, _ = plan.extract({}, {"out": logits})
    np.testing.assert_array_equal(cat["out.class"][0], logits.argmax(axis=1))
    want = softmax(logits.astype(np.float64), axis=1).max(axis=1)
    np.testing.assert_allclose(num["out.confidence"], want, rtol=1e-5)


def test_probabilities_are_not_softmaxed_again() -> None:
    probs = softmax(rng().normal(size=(N, 10)) * 3, axis=1).astype(np.float32)
    plan = FeaturePlan.build({}, {"out": probs})
    num, cat, _ = plan.extract({}, {"out": probs})
    np.testing.assert_array_equal(cat["out.class"][0], probs.argmax(axis=1))
    np.testing.assert_allclose(num["out.confidence"], probs.max(axis=1), rtol=1e-5)
    # A second softmax would flatten them: far from the maximum probability.
    again = softmax(probs.astype(np.float64), axis=1).max(axis=1)
    assert np.abs(num["out.confidence"] - again).max() > 0.1


def test_a_nan_score_gives_a_nan_confidence_for_its_row_only() -> None:
    logits = rng().normal(size=(N, 4)).astype(np.float32)
    plan = FeaturePlan.build({}, {"out": logits})
    batch = rng(1).normal(size=(6, 4)).astype(np.float32)
    batch[2, 1] = np.nan
    num, _, n = plan.extract({}, {"out": batch})
    assert n == 6
    conf = num["out.confidence"]
    assert np.isnan(conf[2]) and np.isfinite(np.delete(conf, 2)).all()


def test_an_integer_output_is_the_predicted_class() -> None:
    classes = rng().integers(0, 4, N)
    plan = FeaturePlan.build({}, {"label": classes})
    assert only(plan, "label").mode == "classes"
    assert plan.kinds() == {"label.class": CATEGORICAL}
    assert plan.scores_output() == "label"
    _, cat, _ = plan.extract({}, {"label": classes})
    np.testing.assert_array_equal(cat["label.class"][0], classes)


def test_a_row_of_more_than_4096_values_is_projected_from_4096_positions() -> None:
    x = rng().normal(size=(200, 5_000)).astype(np.float32)
    x[:, :50] *= 4  # some directions stand out, as in real data
    plan = FeaturePlan.build({"big": x}, {})
    p = only(plan, "big")
    assert p.mode == "vector" and len(p.positions) == 4_096 and len(p.pca_mean) == 4_096
    pos = np.asarray(p.positions)
    assert (np.diff(pos) > 0).all() and pos[0] >= 0 and pos[-1] < 5_000
    num, _, _ = plan.extract({"big": x}, {})
    # The moments use every value; the projections the kept positions.
    np.testing.assert_allclose(num["big.norm"], np.linalg.norm(x, axis=1), rtol=1e-5)
    assert_projections(num, "big", x[:, pos], len(p.pca_components))
    # A smaller row cannot be projected: NaN, not an exception.
    num, _, _ = plan.extract({"big": x[:20, :4_000]}, {})
    assert np.isnan(num["big.pc1"]).all() and np.isfinite(num["big.norm"]).all()


def test_a_larger_row_than_the_reference_with_positions_is_not_projected() -> None:
    x = rng().normal(size=(200, 5_000)).astype(np.float32)
    plan = FeaturePlan.build({"big": x}, {})
    num, _, _ = plan.extract({"big": rng(1).normal(size=(10, 6_000)).astype(np.float32)}, {})
    assert np.isnan(num["big.pc1"]).all()


@pytest.mark.parametrize(
    ("name", "ref_shape", "batch_shape"),
    [
        ("v", (N, 100), (7, 50)),
        ("v", (N, 100), (7, 120)),
        ("img", (N, 3, 8, 8), (7, 3, 4, 4)),
        ("img", (N, 3, 8, 8), (7, 3, 8, 16)),
        ("seq", (N, 6, 16), (7, 6, 12)),
    ],
)
def test_a_batch_of_another_size_gives_nan_projections(
    name: str, ref_shape: tuple[int, ...], batch_shape: tuple[int, ...]
) -> None:
    plan = FeaturePlan.build({name: rng().normal(size=ref_shape).astype(np.float32)}, {})
    batch = rng(1).normal(size=batch_shape).astype(np.float32)
    num, _, n = plan.extract({name: batch}, {})
    assert n == 7
    pcs = [k for k in plan.kinds() if ".pc" in k]
    assert len(pcs) == 8
    for k in pcs:
        assert num[k].shape == (7,) and np.isnan(num[k]).all(), k
    np.testing.assert_allclose(
        num[f"{name}.norm"], np.linalg.norm(batch.reshape(7, -1), axis=1), rtol=1e-5
    )


def test_a_batch_without_an_output_gives_nan_for_its_numeric_features() -> None:
    x = rng().normal(size=(N, 5)).astype(np.float32)
    logits = rng(1).normal(size=(N, 4)).astype(np.float32)
    plan = FeaturePlan.build({"x": x}, {"out": logits})
    num, cat, n = plan.extract({"x": x[:9]}, {})
    assert n == 9
    assert num["out.confidence"].shape == (9,) and np.isnan(num["out.confidence"]).all()
    assert "out.class" not in cat
    np.testing.assert_array_equal(num["x[2]"], x[:9, 2])
    assert set(num) == {k for k, v in plan.kinds().items() if v == NUMERIC}


def reference() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    r = rng(9)
    ids, _ = tokens(9)
    inputs = {
        "s": r.normal(size=N).astype(np.float32),
        "c": r.normal(size=(N, 5)).astype(np.float32),
        "v": r.normal(size=(N, 100)).astype(np.float32),
        "img": r.normal(size=(N, 3, 8, 8)).astype(np.float32),
        "seq": r.normal(size=(N, 6, 16)).astype(np.float32),
        "tok": ids,
        "mask": r.integers(0, 2, (N, 40)),
        "code": r.integers(0, 4, N),
        "text": np.array(["a b c"] * N),
    }
    outputs = {"logits": r.normal(size=(N, 10)).astype(np.float32), "cls": r.integers(0, 3, N)}
    return inputs, outputs


def test_a_plan_read_back_from_json_extracts_the_same_features() -> None:
    inputs, outputs = reference()
    plan = FeaturePlan.build(inputs, outputs)
    assert "text" not in {p.tensor for p in plan.tensors}
    back = FeaturePlan.from_dict(orjson.loads(orjson.dumps(plan.to_dict())))
    assert back.kinds() == plan.kinds()
    batch_in = {k: v[:50] for k, v in inputs.items()}
    batch_out = {k: v[:50] for k, v in outputs.items()}
    num_a, cat_a, n_a = plan.extract(batch_in, batch_out)
    num_b, cat_b, n_b = back.extract(batch_in, batch_out)
    assert n_a == n_b == 50
    assert set(num_a) == set(num_b) and set(cat_a) == set(cat_b)
    for k in num_a:
        np.testing.assert_array_equal(num_a[k], num_b[k], err_msg=k)
    for k in cat_a:
        np.testing.assert_array_equal(cat_a[k][0], cat_b[k][0], err_msg=k)
        assert cat_a[k][1] == cat_b[k][1]


def test_a_plan_of_only_strings_is_refused() -> None:
    with pytest.raises(InvalidInput, match="nothing to profile") as exc:
        FeaturePlan.build({"text": np.array(["a", "b"] * 60)}, {"tag": np.array(["x"] * 120)})
    assert exc.value.field == "data"
