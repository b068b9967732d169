"""The ``sweep`` command line."""
