"""Fixtures of the scale-out tests (defined in scale_helpers)."""

from scale_helpers import empty_authfile, scale_layout, scale_source, workers

__all__ = ("empty_authfile", "scale_layout", "scale_source", "workers")
