# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Showing user input and server answers in messages, cut to a readable size. Internal; may change in any release."""

from __future__ import annotations

# Longest repr of a value an error message quotes: enough to recognise an id, an LSN or a URL.
ECHO_LIMIT = 100


def echo(value, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters with the full length noted: input can be megabytes long."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:limit]}... ({size})"


def cut(text, limit: int = 2000) -> str:
    """A server's message or body text, cut to ``limit`` characters with the full length noted."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
