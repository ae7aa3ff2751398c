"""attncc version (imported by every layer, so it lives alone)."""
__version__ = "0.1.0"
