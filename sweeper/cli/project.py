"""The project a command works on; it lives in :mod:`sweeper.project` (the Python API uses it too)."""

from sweeper.project import Project, project_from

__all__ = ["Project", "project_from"]
