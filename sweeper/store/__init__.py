"""The sweeper store: Parquet datasets, content-addressed blobs and execution folders.

The layout, the schemas and the guarantees are described in docs/store.md.
"""

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

from ._blobs import blob_uri, hash_file, parse_blob_uri
from ._datasets import (
    LATEST,
    DatasetFile,
    DatasetVersion,
    dataset_versions,
    find_version,
    split_version_uri,
    version_uri,
)
from ._format import SCHEMA_VERSION
from ._protocol import RecordStore
from ._store import Store

# The Arrow schemas and the part reader import pyarrow: loaded on first use, so that an
# execution actor runs its steps without it (tests/store/test_store_imports.py).
__getattr__ = lazy_attributes(
    __name__,
    {"DamagedPartWarning": "sweeper.store._parts", "SCHEMAS": "sweeper.store._schema"},
)

if TYPE_CHECKING:
    from ._parts import DamagedPartWarning
    from ._schema import SCHEMAS

__all__ = [
    "LATEST",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "DamagedPartWarning",
    "DatasetFile",
    "DatasetVersion",
    "RecordStore",
    "Store",
    "blob_uri",
    "dataset_versions",
    "find_version",
    "hash_file",
    "parse_blob_uri",
    "split_version_uri",
    "version_uri",
]
