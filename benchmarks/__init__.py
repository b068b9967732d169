"""Benchmarks of sweeper against Ray Tune, plain Optuna, plain loops and Docker.

Run ``python -m benchmarks [--quick] [--cases overhead,containers,...]``; see README.md.
"""
