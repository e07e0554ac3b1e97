"""The class tables in code equal the project's reference tables (../shared/reference/classes)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lpft_bench.datamodules import class_tables as tables

CLASSES = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "classes"

pytestmark = pytest.mark.skipif(not CLASSES.is_dir(), reason=f"{CLASSES} is absent (the reference lives beside the repository)")


def rows(name: str) -> list[dict]:
    with open(CLASSES / name, newline="") as f:
        return list(csv.DictReader(f))


def lines(name: str) -> list[str]:
    return (CLASSES / name).read_text().split()


@pytest.mark.parametrize("name, table", [("living17.csv", tables.LIVING17), ("entity30.csv", tables.ENTITY30)])
def test_breeds_tables(name, table):
    expected = [(int(r["class_index"]), r["class_name"], r["split"], r["wnid"]) for r in rows(name)]
    ours = [(index, c.name, side, wnid) for index, c in enumerate(table)
            for side in ("source", "target") for wnid in getattr(c, side)]
    assert ours == expected


def test_wnid_lists():
    assert list(tables.IMAGENET_R_WNIDS) == lines("imagenet_r_wnids.txt")
    assert list(tables.IMAGENET_A_WNIDS) == lines("imagenet_a_wnids.txt")


def test_domainnet_stl_and_fmow_tables():
    assert [(int(r["label"]), r["class_name"]) for r in rows("domainnet_sentry40.csv")] == list(enumerate(tables.DOMAINNET40))
    stl = rows("cifar10_stl10_map.csv")
    assert [None if r["cifar_index"] == "-1" else int(r["cifar_index"]) for r in stl] == list(tables.STL10_TO_CIFAR10)
    mapped = [tables.CIFAR10_CLASSES[i] for i in tables.STL10_TO_CIFAR10 if i is not None]
    assert [r["cifar_name"] for r in stl if r["cifar_name"]] == mapped
    assert list(tables.FMOW_CATEGORIES) == lines("fmow_categories.txt")
    assert list(tables.FMOW_REGIONS) == lines("fmow_regions.txt")
