"""sweeper: valohai.yaml steps and sweeps on Ray."""

__version__ = "0.1.0"
