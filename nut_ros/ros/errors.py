"""Errors raised by the ROS conversion layer."""


class ConversionError(ValueError):
    """A message (or array) cannot be converted; the text names the offending field."""
