"""icsight kernel: the event model, settings and CLI that every stage shares."""

__version__ = "0.1.0"
