"""The HTTP service's request validation (pure) and, end to end, its answers on loopback."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from s3rec.serve import MAX_K, RequestError, parse_request


def _err(body, **kw) -> RequestError:
    with pytest.raises(RequestError) as e:
        parse_request(body if isinstance(body, bytes) else json.dumps(body).encode(), **kw)
    return e.value


def test_valid_request_defaults():
    assert parse_request(b'{"history": ["a", 2]}') == {"history": ["a", 2], "k": 10, "exclude_history": True, "user": None}
    assert parse_request(b'{"user": "u1", "k": 3}')["user"] == "u1"


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"{not json", HTTPStatus.BAD_REQUEST, "not valid JSON"),
        (b"\xff\xfe", HTTPStatus.BAD_REQUEST, "not valid JSON"),
        ([1, 2], HTTPStatus.BAD_REQUEST, "JSON object"),
        ({}, HTTPStatus.BAD_REQUEST, "give a 'history'"),
        ({"history": []}, HTTPStatus.BAD_REQUEST, "empty"),
        ({"history": "abc"}, HTTPStatus.BAD_REQUEST, "list of item ids"),
        ({"history": [1.5]}, HTTPStatus.BAD_REQUEST, "list of item ids"),
        ({"history": [True]}, HTTPStatus.BAD_REQUEST, "list of item ids"),
        ({"history": [1], "k": 0}, HTTPStatus.BAD_REQUEST, "'k'"),
        ({"history": [1], "k": "5"}, HTTPStatus.BAD_REQUEST, "'k'"),
        ({"history": [1], "k": MAX_K + 1}, HTTPStatus.BAD_REQUEST, "'k'"),
        ({"history": [1], "exclude_history": "yes"}, HTTPStatus.BAD_REQUEST, "exclude_history"),
        ({"history": [1], "user": [1]}, HTTPStatus.BAD_REQUEST, "'user'"),
        ({"history": [1], "extra": 1}, HTTPStatus.BAD_REQUEST, "unknown field"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(body, status, words):
    e = _err(body)
    assert e.status == status and words in str(e)


def test_too_long_history_and_k_above_catalogue():
    assert _err({"history": [1] * 11}, max_history=10).status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert "1..20" in str(_err({"history": [1], "k": 21}, n_items=20))
