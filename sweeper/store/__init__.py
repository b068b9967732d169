"""The sweeper store: Parquet datasets, content-addressed blobs and execution folders.

The layout, the schemas and the guarantees are described in docs/store.md.
"""

from ._blobs import blob_uri, hash_file, parse_blob_uri
from ._parts import DamagedPartWarning
from ._protocol import RecordStore
from ._schema import SCHEMA_VERSION, SCHEMAS
from ._store import Store

__all__ = [
    "SCHEMAS",
    "SCHEMA_VERSION",
    "DamagedPartWarning",
    "RecordStore",
    "Store",
    "blob_uri",
    "hash_file",
    "parse_blob_uri",
]
