"""services.platform.auth: the one bearer parsing and token comparison every endpoint uses."""

from __future__ import annotations

import pytest

from services.platform.auth import bearer_token, header_value, lower_headers, token_matches


@pytest.mark.parametrize(("headers", "token"), [
    ({"Authorization": "Bearer abc"}, "abc"),
    ({"authorization": "bearer  abc "}, "abc"),
    ({"AUTHORIZATION": ["Bearer abc", "Bearer other"]}, "abc"),
    ({"Authorization": "Basic abc"}, None),
    ({"Authorization": "Bearer "}, None),
    ({"Authorization": "Bearerabc"}, None),
    ({}, None),
    (None, None),
])
def test_bearer_token(headers: dict[str, object] | None, token: str | None) -> None:
    assert bearer_token(headers) == token


def test_header_value_is_case_insensitive_and_takes_the_first_of_a_list() -> None:
    assert header_value({"X-Forwarded-For": ("1.2.3.4", "5.6.7.8")}, "x-forwarded-for") == "1.2.3.4"
    assert header_value({"X-Other": "a"}, "x-forwarded-for") == ""
    assert lower_headers({"Content-Type": ["a/b", "c/d"], "X-Empty": [], "X-N": 3}) == {"content-type": "a/b", "x-empty": "", "x-n": "3"}


def test_token_matches_only_the_same_token() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret ", "s3cret")
    assert not token_matches("s3cre", "s3cret")
    assert not token_matches(None, "s3cret")
    assert not token_matches("", "s3cret")
