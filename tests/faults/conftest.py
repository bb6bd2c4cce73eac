"""Fixtures for fault tests. A test that needs the whole service asks for `make_stack`:

def test_postgres_restart(make_stack):
    stack = make_stack(own_postgres=True)       # options: tests/faults/stack.py
    load = Load(stack).start()
    ...                                         # stack.postgres.stall(), ...
    load.stop()
    reconcile(stack, load)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.faults.stack import Stack, running_stack


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start a stack (`running_stack`'s options); everything stops after the test."""
    made: list[Stack] = []
    with ExitStack() as stacks:

        def make(**options: Any) -> Stack:
            folder = tmp_path / f"stack{len(made) + 1}"
            made.append(stacks.enter_context(running_stack(folder, **options)))
            return made[-1]

        yield make
