"""The instance catalog: the bundled copy, and clear errors for broken user catalogs."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from modelscale.errors import InvalidInput
from modelscale.plan import default_catalog_path, load_catalog
from modelscale.plan.catalog import infer_arch


def test_bundled_catalog() -> None:
    cat = load_catalog()
    assert cat.bundled
    assert len(cat.instances) == 93
    assert {i.provider for i in cat.instances} == {"aws", "gcp", "azure"}
    assert sum(i.is_gpu for i in cat.instances) == 29
    assert all(i.price_per_hour > 0 and i.source for i in cat.instances)
    # The five rows flagged in the shared catalog are not in the bundled copy.
    names = {i.name for i in cat.instances}
    assert not names & {"a3-highgpu-1g", "a2-ultragpu-1g", "Standard_ND96isr_H100_v5"}
    m7i = cat.find("M7I.LARGE")
    assert (m7i.vcpus, m7i.memory_gib, m7i.price_per_hour) == (2, 8.0, 0.1008)
    assert m7i.monthly() == pytest.approx(0.1008 * 730)
    assert m7i.price(spot=True) == pytest.approx(0.0316)
    assert (default_catalog_path().parent / "instances.md").is_file()


def test_arch_inference() -> None:
    assert infer_arch("c7g.large") == "arm64"
    assert infer_arch("m7gd.xlarge") == "arm64"
    assert infer_arch("t2a-standard-4") == "arm64"
    assert infer_arch("Standard_D4ps_v5") == "arm64"
    assert infer_arch("g5.xlarge") == "x86_64"
    assert infer_arch("Standard_D4as_v5") == "x86_64"
    assert infer_arch("n2d-standard-2") == "x86_64"


def test_missing_columns_are_named(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("provider,instance_type,vcpus\naws,x1,2\n", encoding="utf-8")
    with pytest.raises(
        InvalidInput, match=r"lacks the column\(s\) memory_gib, price_per_hour_usd"
    ) as e:
        load_catalog(path)
    assert e.value.field == "memory_gib"


def test_non_numeric_price_names_row_and_column(write_catalog: Callable[..., pathlib.Path]) -> None:
    path = write_catalog([("aws", "ok.large", 2, 8, 0.1), ("aws", "bad.large", 2, 8, "cheap")])
    with pytest.raises(
        InvalidInput, match=r"row 3 \(bad.large\): column 'price_per_hour_usd'"
    ) as e:
        load_catalog(path)
    assert e.value.field == "price_per_hour_usd"


@pytest.mark.parametrize(
    ("row", "column"),
    [(("aws", "a", "two", 8, 0.1), "vcpus"), (("aws", "a", 0, 8, 0.1), "vcpus"),
     (("aws", "a", 2, "-1", 0.1), "memory_gib"), (("aws", "a", 2, 8, "-0.5"), "price_per_hour_usd")],
)  # fmt: skip
def test_bad_numbers(write_catalog: Callable[..., pathlib.Path], row: tuple, column: str) -> None:
    with pytest.raises(InvalidInput, match=f"column '{column}'"):
        load_catalog(write_catalog([row]))


def test_flagged_rows_are_skipped(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "provider,instance_type,vcpus,memory_gib,price_per_hour_usd,flag_reason\n"
        "aws,good.large,2,8,0.1,\n"
        "gcp,odd-gpu,12,85,0.01,price far below other regions\n",
        encoding="utf-8",
    )
    cat = load_catalog(path)
    assert [i.name for i in cat.instances] == ["good.large"]
    assert cat.flagged == ("gcp/odd-gpu: price far below other regions",)


def test_other_broken_catalogs(
    tmp_path: pathlib.Path, write_catalog: Callable[..., pathlib.Path]
) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_catalog(tmp_path / "nope.csv")
    with pytest.raises(InvalidInput, match="no usable rows"):
        load_catalog(write_catalog([]))
    with pytest.raises(InvalidInput, match="appears twice"):
        load_catalog(write_catalog([("aws", "a", 2, 8, 0.1), ("aws", "a", 2, 8, 0.2)]))
    with pytest.raises(InvalidInput, match="Unknown machine type 'zz'"):
        load_catalog(write_catalog([("aws", "a", 2, 8, 0.1)])).find("zz")
