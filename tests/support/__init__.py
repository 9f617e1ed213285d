"""Helpers shared by the test suites: ``fatoracle`` (dosfstools and mtools as oracles)."""
