"""llorch control plane and pool agent. Never imports torch or transformers."""
__version__ = "0.1.0"
