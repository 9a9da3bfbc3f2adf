"""Data: readers, splits, preprocessing, binarization, protocols, labels and synthetic anomalies."""

from vaelab.data.dataset import Dataset, Preprocessing, RawData, Split
from vaelab.data.registry import DATASETS, load_dataset, load_grey, load_path, load_raw

__all__ = ["DATASETS", "Dataset", "Preprocessing", "RawData", "Split", "load_dataset", "load_grey", "load_path", "load_raw"]
