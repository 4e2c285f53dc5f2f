"""Errors raised by the geo package.

They subclass ValueError because every one of them means "the caller handed
us a bad value"; the server can map them to a 4xx response and use
``field``/``message`` to tell the user what to fix.
"""

from __future__ import annotations


class GeoError(ValueError):
    """Base class of every error the geo package raises on bad input."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CoordinateError(GeoError):
    """A coordinate (or the coordinate system named for it) is unusable."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ZoneError(GeoError):
    """A zone definition (circle parameters or GeoJSON polygon) is unusable."""
