"""Errors raised when a wire format cannot be decoded."""


class SchemaError(Exception):
    """Base class for wire-format errors."""


class DecodeError(SchemaError):
    """A stored or received payload did not match its schema; chained with the cause."""
