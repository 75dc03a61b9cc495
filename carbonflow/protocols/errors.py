"""The one error type every protocol codec raises on bad bytes or bad request parameters."""


class ProtocolError(ValueError):
    """A frame or a request that the codec cannot accept; the message says what and where."""
