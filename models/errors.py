"""Errors raised by the models package."""


class ModelError(Exception):
    """Base class of every error raised by :mod:`models`."""


class EncoderError(ModelError):
    """The text encoder could not load or run."""


class StateError(ModelError):
    """A stored user state could not be decoded."""
