"""llorch worker: HTTP inference server (torch + transformers)."""
__version__ = "0.1.0"
