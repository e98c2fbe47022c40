"""The data layer: read tables, validate and split examples, and the catalog of shipped data sets.

Everything a run trains on comes out of :func:`load_splits` as a :class:`DatasetSplits`.
"""

from transferkit.data.catalog import (
    DATASETS,
    cache_dir,
    fetch_dataset,
    load_catalog_dataset,
    register_dataset,
)
from transferkit.data.readers import read_table
from transferkit.data.splits import DatasetSplits, load_splits, read_labelled

# Image entries of the catalog (their module ends with its registration calls).
from transferkit.data import image_catalog as _image_catalog  # noqa: F401, E402  isort: skip

__all__ = [
    "DATASETS",
    "DatasetSplits",
    "cache_dir",
    "fetch_dataset",
    "load_catalog_dataset",
    "load_splits",
    "read_labelled",
    "read_table",
    "register_dataset",
]
