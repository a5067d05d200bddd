"""Fixtures of the workflow tests."""

from wfutil import tiny_run  # noqa: F401  (fixture shared with tests/cluster)
