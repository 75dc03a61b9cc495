"""carbonflow — power-flow-based carbon emission metering (基于电力流的碳排放计量)."""

__version__ = "0.1.0"
