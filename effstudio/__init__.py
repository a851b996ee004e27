"""effstudio: a desktop lab for efficient Transformers."""

__version__ = "0.1.0"
