"""Delivery of stored, sequenced messages to users over websockets.

This package knows users only by an opaque id and messages only by type and JSON data; what the
messages mean belongs to the application that enqueues them.
"""
