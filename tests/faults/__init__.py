"""Fault injection: each fault of issue #12 with the real part, then a reconciliation."""
