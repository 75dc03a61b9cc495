"""Pure codecs for field-device protocols: bytes <-> typed values, no I/O.

Every decoder raises only :class:`ProtocolError` (or a subclass) on bad input; anything else escaping a
decoder is a bug (the fuzz tests check this).  Values read from meters are :class:`decimal.Decimal`
with the device's own scaler, never floats.
"""

from carbonflow.protocols.errors import ProtocolError

__all__ = ["ProtocolError"]
