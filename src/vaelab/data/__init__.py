"""Data: readers, splits, preprocessing, binarization, protocols, labels and synthetic anomalies."""

from vaelab.data.dataset import Dataset, Preprocessing, RawData, Split
from vaelab.data.registry import DATASETS, digits_config, load_dataset, load_grey, load_path, load_raw

__all__ = ["DATASETS", "Dataset", "Preprocessing", "RawData", "Split", "digits_config", "load_dataset", "load_grey", "load_path", "load_raw"]
