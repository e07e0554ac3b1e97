"""FMoW (WILDS): satellite images of the Americas (ID) vs Africa and Europe (OOD), 62 categories.

Layout under the data root (WILDS `fmow` v1.1, as its downloader unpacks it):
    fmow_v1.1/rgb_metadata.csv            one row per image: split, category, country_code, timestamp, ...
    fmow_v1.1/country_code_mapping.csv    columns alpha-3 and region (the region's name)
    fmow_v1.1/images/rgb_img_<i>.png      the image of metadata row i (counting rows from 0)

WILDS's official scheme holds out everything from 2013 on as shifted in time; the paper's shift is geography
only, so every set here comes from the earlier images: training from the `train` split, evaluation from WILDS's
in-time validation split `id_val` (the `val` rows before 2013). Regions are chosen by name through the country
mapping (codes it does not know are "Other"), never by WILDS's integer region index, which depends on row order.
Categories missing from the Americas training images keep their label: the model keeps 62 outputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .base import ID_TEST, DatasetMissing
from .class_tables import FMOW_CATEGORIES
from .fakes import random_pixels
from .imagedata import DataSource, ImageShiftDataModule, LabeledFiles, SetSpec
from .transforms import Pipeline, horizontal_flip, random_resized_crop, resize

FMOW = DataSource(
    "FMoW (WILDS v1.1)",
    "<root>/fmow_v1.1/{rgb_metadata.csv,country_code_mapping.csv,images/rgb_img_<i>.png}",
    "pip install wilds, then python -c \"from wilds import get_dataset; get_dataset('fmow', root_dir='<root>', "
    "download=True)\" (about 50 GB), which unpacks fmow_v1.1/ into the data root",
)
FMOW_DIR = "fmow_v1.1"
# WILDS's official split scheme (time_after_2016) treats images from 2013 on as shifted in time.
IN_TIME_BEFORE = pd.Timestamp("2013-01-01", tz="UTC")
# Each set: (WILDS split, region name).
SELECTIONS = {"train": ("train", "Americas"), ID_TEST: ("id_val", "Americas"),
              "africa": ("id_val", "Africa"), "europe": ("id_val", "Europe")}
# The fake's (country code, region); the last code is missing from the mapping, so WILDS calls its region "Other".
FAKE_FMOW_COUNTRIES = (("USA", "Americas"), ("BRA", "Americas"), ("NGA", "Africa"), ("FRA", "Europe"),
                       ("CHN", "Asia"), ("ZZZ", None))
# Category 61 is absent from the Americas but not from Africa and Europe (the model still has 62 outputs).
FAKE_FMOW_CATEGORIES = {"Americas": (0, 5), "Africa": (0, 5, 61), "Europe": (5, 61), "Asia": (0,), "Other": (0,)}


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetMissing(path, "FMoW metadata file not found")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetMissing(path, f"not a readable CSV table: {error}") from None
    absent = [column for column in columns if column not in table.columns]
    if absent:
        raise DatasetMissing(path, f"FMoW metadata lacks the column(s) {', '.join(absent)}")
    return table


def read_fmow(directory: Path, split: str, region: str) -> LabeledFiles:
    """The images of one WILDS in-time split ("train" or "id_val") taken in one region, with WILDS's labels."""
    metadata = read_table(directory / "rgb_metadata.csv", ("split", "category", "country_code", "timestamp"))
    countries = read_table(directory / "country_code_mapping.csv", ("alpha-3", "region"))
    regions = metadata["country_code"].map(dict(zip(countries["alpha-3"], countries["region"]))).fillna("Other")
    try:
        in_time = pd.to_datetime(metadata["timestamp"], utc=True, format="ISO8601") < IN_TIME_BEFORE
    except ValueError as error:
        raise DatasetMissing(directory / "rgb_metadata.csv", f"unreadable timestamp: {error}") from None
    wilds_split = {"train": "train", "id_val": "val"}[split]
    rows = np.flatnonzero(((metadata["split"] == wilds_split) & in_time & (regions == region)).to_numpy())
    if len(rows) == 0:
        raise DatasetMissing(directory / "rgb_metadata.csv", f"no {split} images of region {region!r}")
    category_index = {name: index for index, name in enumerate(FMOW_CATEGORIES)}
    categories = metadata["category"].iloc[rows]
    unknown = sorted(set(categories) - set(category_index))
    if unknown:
        raise DatasetMissing(directory / "rgb_metadata.csv", f"unknown FMoW categories: {', '.join(map(str, unknown))}")
    return LabeledFiles([directory / "images" / f"rgb_img_{row}.png" for row in rows],
                        [category_index[name] for name in categories])


class FmowShift(ImageShiftDataModule):
    """FMoW Americas (ID) vs Africa and Europe (OOD), 62 categories."""

    name = "fmow"
    class_names = FMOW_CATEGORIES
    augment_by_default = False
    # datasets_fmow.yaml at 36fb2ef: training std 0.2289 (L16-19), evaluation 0.229 (L24-27).
    paper_std = ((0.2289, 0.224, 0.225), (0.229, 0.224, 0.225))
    sets = (
        # The reference gives no per-region counts.
        SetSpec("train", "train", FMOW_DIR, FMOW),
        SetSpec(ID_TEST, "id", FMOW_DIR, FMOW),
        SetSpec("africa", "ood", FMOW_DIR, FMOW),
        SetSpec("europe", "ood", FMOW_DIR, FMOW),
    )

    def pipelines(self, size: int, interpolation: str, crop_pct: float) -> tuple[Pipeline, Pipeline]:
        """The authors' datasets_fmow.yaml: the native 224x224 images as they are, no augmentation (the resize
        is the identity at 224 and adapts other input sizes); `augment=True` adds torchvision's
        random-resized-crop + flip."""
        return ([random_resized_crop(size, "bilinear"), horizontal_flip()], [resize((size, size), "bilinear")])

    def load(self, spec: SetSpec, path: Path) -> LabeledFiles:
        return read_fmow(path, *SELECTIONS[spec.name])

    @classmethod
    def write_fake(cls, root: Path, images_per_class: int, rng: np.random.Generator) -> None:
        """WILDS-style FMoW metadata over five regions and four splits, half the images from after 2012."""
        directory = root / FMOW_DIR
        (directory / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for code, region in FAKE_FMOW_COUNTRIES:
            for split in ("train", "val", "test", "seq"):
                for category in FAKE_FMOW_CATEGORIES[region or "Other"]:
                    for i in range(images_per_class):
                        for timestamp in ("2010-06-15T10:16:40Z", "2014-03-02T08:01:12.345Z"):
                            rows.append({"split": split, "category": FMOW_CATEGORIES[category], "country_code": code,
                                         "timestamp": timestamp, "img_filename": f"{code}_{category}_{i}.jpg"})
        metadata = pd.DataFrame(rows)
        metadata["img_path"] = "images/" + metadata["img_filename"]
        metadata.to_csv(directory / "rgb_metadata.csv", index=False)
        mapping = [{"name": code, "alpha-3": code, "region": region} for code, region in FAKE_FMOW_COUNTRIES if region]
        pd.DataFrame(mapping).to_csv(directory / "country_code_mapping.csv", index=False)
        for row in range(len(metadata)):
            Image.fromarray(random_pixels(rng)).save(directory / "images" / f"rgb_img_{row}.png")
