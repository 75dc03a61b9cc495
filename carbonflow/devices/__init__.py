"""Simulated field devices that serve the real protocols on TCP (meters, electric-carbon meters, RTUs,
cameras).  Values come from a pluggable :class:`~carbonflow.devices.base.ValueSource`."""
