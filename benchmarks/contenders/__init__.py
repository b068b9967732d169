"""The contenders: each a module run as ``python -m benchmarks.contenders.<name>``.

Every contender takes the same arguments (see :mod:`benchmarks.contenders.common`), runs
N trials of a step of the benchmark project, and writes a JSON report to ``--out``.
"""
