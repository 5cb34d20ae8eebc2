"""File storage behind one interface, with HMAC-signed expiring URLs.

``Storage`` (put/get/delete/signed_url/cleanup) has one implementation today,
``LocalStorage`` under ``<data_dir>/files``; an S3-compatible backend would
implement the same methods and return presigned URLs from ``signed_url``.
"""

from relay.storage.base import Storage, StorageError, StoredFile
from relay.storage.local import LocalStorage
from relay.storage.signing import UrlSigner, load_signing_key

__all__ = ["Storage", "StorageError", "StoredFile", "LocalStorage", "UrlSigner", "load_signing_key"]
