"""tasks.redact: the one function that takes passwords out of URLs and text."""

from __future__ import annotations

import pytest

from tasks.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pw@host:8080/a.jpg?x=1", "http://host:8080/a.jpg?x=1"),
        ("https://token@i.imgur.com/a.png", "https://i.imgur.com/a.png"),
        ("postgresql://mlflow:p@ss@db:5432/mlflow", "postgresql://db:5432/mlflow"),  # '@' inside the password
        ("http://:secret@host/", "http://host/"),
        ("http://host/path@not-a-user/x?q=a@b#c@d", "http://host/path@not-a-user/x?q=a@b#c@d"),  # not userinfo
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
        ("models:/gotoubun-classifier@champion", "models:/gotoubun-classifier@champion"),  # an alias, not a user
        ("no URL here: a@b", "no URL here: a@b"),
        ("failed: http://a:b@h1/x and https://c:d@h2/y.", "failed: http://h1/x and https://h2/y."),
        ("ConnectionError(host='h', url='http://u:p@h:9/api')", "ConnectionError(host='h', url='http://h:9/api')"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent, and a clean URL is returned unchanged
