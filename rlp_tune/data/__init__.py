"""Datasets: the registry and the training-ready bundle (datasets.py); one file per family of loaders,
each registering its datasets on import (shipped.py, cifar.py, idx.py, folders.py)."""
from .datasets import (DATASETS, DataBundle, DatasetError, DatasetSpec, RawData, build_data, dataset_spec,
                       list_datasets, load_raw, register_dataset)
from . import shipped as _shipped  # noqa: F401  (each import registers its family)
from . import cifar as _cifar  # noqa: F401
from . import idx as _idx  # noqa: F401
from . import folders as _folders  # noqa: F401

__all__ = ["DATASETS", "DataBundle", "DatasetError", "DatasetSpec", "RawData", "build_data", "dataset_spec",
           "list_datasets", "load_raw", "register_dataset"]
