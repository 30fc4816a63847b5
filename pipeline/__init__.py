"""PAHA: parts-aware audio-driven human animation, as a reproducible pipeline."""

__version__ = "0.1.0"
