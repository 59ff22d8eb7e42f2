"""What the review commands share: settings from the environment (the one place they are read) and a Redis
client with clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")


def load_settings(**overrides: Any) -> Any:
    """``ReviewSettings`` from the environment, then the command-line overrides that were given."""
    from fraudstream.detectors.env_settings import SettingsError
    from fraudstream.review_queue.settings import ReviewSettings

    try:
        return ReviewSettings.from_env(**overrides)
    except SettingsError as exc:
        raise click.ClickException(f"bad review settings: {exc}") from None


def settings_help() -> str:
    from fraudstream.review_queue.settings import ReviewSettings

    rows = [f"{name} (default {default}): {help_text}" for name, default, help_text in ReviewSettings.describe()]
    return "\b\nSettings (environment):\n" + "\n".join(rows)


def run_with_redis(settings: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(redis)`` on a ``redis.asyncio`` client (text); a Redis that does not answer is a clear error."""
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from fraudstream.detectors.env_settings import redact_url

    if not settings.redis_url:
        raise click.ClickException("no Redis: set REDIS_URL or FRAUDSTREAM_REVIEW_REDIS_URL")

    async def main() -> T:
        client = aioredis.from_url(settings.redis_url, decode_responses=True)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except RedisConnectionError as exc:
        raise click.ClickException(f"Redis at {redact_url(settings.redis_url)} does not answer: {exc}") from None
