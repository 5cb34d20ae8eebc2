"""Admin operations shared by the ``relay admin`` CLI and the admin HTTP API (``/admin/v1/``)."""
