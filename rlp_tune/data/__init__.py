from .datasets import DATASETS, DataBundle, DatasetError, RawData, build_data, list_datasets, load_raw, register_dataset
from . import files as _files  # noqa: F401  (registers the file-based datasets)

__all__ = ["DATASETS", "DataBundle", "DatasetError", "RawData", "build_data", "list_datasets", "load_raw", "register_dataset"]
