"""Failures of the back ends that every part of the server may meet."""

from __future__ import annotations


class Unavailable(Exception):
    """A back end (the store or the broker) cannot be reached right now.

    Nothing was changed, or the change is durable but its outcome is unknown
    to the caller: retrying an idempotent command is safe.
    """
