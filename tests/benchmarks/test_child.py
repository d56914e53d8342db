"""Each benchmark mode runs in a child process; its marked result line is picked out of its other output."""

import sys

import pytest

from benchmarks.child import RESULT_PREFIX, run_child
from ldm.errors import LdmError


def test_the_marked_line_is_the_result():
    code = f"print('library chatter'); print({RESULT_PREFIX!r} + '{{\"x\": 1}}'); print('more chatter')"
    assert run_child([sys.executable, "-c", code]) == {"x": 1}


def test_a_failed_child_is_one_line_naming_its_last_words():
    code = "import sys; print('error: out of memory', file=sys.stderr); sys.exit(3)"
    with pytest.raises(LdmError, match=r"failed with exit code 3: out of memory$"):
        run_child([sys.executable, "-c", code])
