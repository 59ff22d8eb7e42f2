"""How a setting's URL is shown in logs and errors."""

from __future__ import annotations

import pytest

from fraudstream.detectors.env_settings import redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
    ("rediss://alice:p%40ss@cache.example:6380/2", "rediss://alice:***@cache.example:6380/2"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://alice@host/0", "redis://alice@host/0"),
    ("kafka-1:9092,kafka-2:9092", "kafka-1:9092,kafka-2:9092"),
    ("", ""),
])
def test_a_password_in_a_url_is_never_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown
