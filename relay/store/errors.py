"""Errors the repositories raise (the web layer maps them to 404/409/400)."""


class NotFound(LookupError):
    """No such row."""


class Conflict(ValueError):
    """The row exists already, or a reference points nowhere."""
