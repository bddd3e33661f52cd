"""Core of empathy-router: the `empathy` command line and the one settings object per process."""

__version__ = "0.1.0"
