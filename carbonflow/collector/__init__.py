"""Edge front-end: talks to field devices, time-stamps, validates and forwards readings to a center."""
