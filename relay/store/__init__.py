"""relay's store: ``Database`` (db.py), migrations, and one repository module per table.

Repositories are plain async functions taking a ``Database`` (or a transaction)
first; they return the dataclasses of ``relay.models``.
"""

from relay.store.db import Database, DatabaseError

__all__ = ["Database", "DatabaseError"]
