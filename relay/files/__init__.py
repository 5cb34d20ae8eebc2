"""File storage behind one interface, with HMAC-signed expiring URLs.

``Storage`` (put/get/delete/signed_url/cleanup) has two implementations:
``LocalStorage`` under ``<data_dir>/files`` (one node) and ``DatabaseStorage`` in the
shared database (a fleet on PostgreSQL: any node serves any signed link). An
S3-compatible backend would implement the same methods and return presigned URLs
from ``signed_url``. Setting ``file_storage`` chooses (``auto``: the database on PostgreSQL).
"""

from relay.files.base import Storage, StorageError, StoredFile
from relay.files.database import DatabaseStorage, fleet_signing_key
from relay.files.local import LocalStorage
from relay.files.signing import UrlSigner, load_signing_key

__all__ = ["Storage", "StorageError", "StoredFile", "LocalStorage", "DatabaseStorage", "UrlSigner",
           "load_signing_key", "fleet_signing_key"]
