"""Abuse limits, request size caps and the websocket origin check."""
