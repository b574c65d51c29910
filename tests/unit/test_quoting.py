"""The quoting of the unit of work's simple queries (BEGIN with the claim, the outbox
insert with the COMMIT), whose values go in as literals: only the quote is special in a
standard string, and NUL cannot be stored."""

from __future__ import annotations

import pytest

from saga_log.runtime.unit_of_work import _array, _literal


def test_a_quote_is_doubled_and_nothing_else_changes() -> None:
    assert _literal("it's") == "'it''s'"
    assert _literal("'); DROP TABLE inbox; --") == "'''); DROP TABLE inbox; --'"
    assert _literal(r"back\slash \' $1 " + '"') == r"'back\slash \'' $1 " + '"' + "'"
    assert _literal("") == "''"


def test_nul_and_non_text_are_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        _literal("a\x00b")
    with pytest.raises(TypeError):
        _literal(42)  # type: ignore[arg-type]


def test_an_array_of_literals() -> None:
    assert _array([]) == "ARRAY[]::text[]"
    assert _array(["a", "b'c"]) == "ARRAY['a', 'b''c']::text[]"
