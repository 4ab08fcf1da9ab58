"""Helpers shared by the tests and the benchmark: run the service's real processes, send
commands, record topics, and wait on the state of what runs (never on log lines).

Neither ``tests/`` nor ``bench/`` imports the other; both import this package.
"""
