"""Faults against the real parts, each reconciled: tests/faults/stack.py runs the
production shape on loopback, load.py streams what clients send while a test breaks
something, reconcile.py proves every answer was kept exactly once. See
docs/reliability.md for what each test proves and how to run the long forms."""
