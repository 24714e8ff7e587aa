"""Datasets on the edge board: readers for the accepted formats, statistics and batches.

Imports only the standard library and numpy (Pillow lazily, for folder:DIR only), because
this package runs on the board.
"""

from .batching import augment_batch, batches, num_batches
from .dataset import Dataset
from .errors import DataError
from .spec import DATA_SPEC_HELP, DEFAULT_SPEC, load_dataset

__all__ = [
    "DATA_SPEC_HELP",
    "DEFAULT_SPEC",
    "DataError",
    "Dataset",
    "augment_batch",
    "batches",
    "load_dataset",
    "num_batches",
]
