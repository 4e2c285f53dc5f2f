"""The test process's garbage collector: every test's servers run in this process, and a full
pass of the collector stops them (tests/conftest.py, settle_garbage_between_tests)."""

from __future__ import annotations

import gc
import weakref

from tests.conftest import settle_garbage_between_tests


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


# Made when the tests were collected, as the modules and the session's fixtures are.
MADE_AT_COLLECTION = Node()


def test_what_the_session_held_before_a_test_is_out_of_the_collectors_passes() -> None:
    assert gc.is_tracked(MADE_AT_COLLECTION)
    # In none of the generations a pass walks, however long the session has run.
    assert not any(o is MADE_AT_COLLECTION for o in gc.get_objects())


def test_what_a_test_leaves_is_collected_if_garbage_and_frozen_if_not() -> None:
    # A stopped server's objects in a reference cycle: garbage only the collector finds.
    first, second = Node(), Node()
    first.other, second.other = second, first
    cycle = weakref.ref(first)
    del first, second
    kept = Node()
    assert any(o is kept for o in gc.get_objects())

    settle_garbage_between_tests()

    assert cycle() is None
    assert not any(o is kept for o in gc.get_objects())
