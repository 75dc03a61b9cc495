"""Cross-region intensities between the centers of neighbouring regions (docs/interop.md)."""
