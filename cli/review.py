"""``fraudstream review``: serve the analysts' review page and its JSON API."""

from __future__ import annotations

import click

from fraudstream.cli.review_common import load_settings, settings_help


@click.command("review", epilog=settings_help())
@click.option("--host", default=None, help="Address to listen on (default: FRAUDSTREAM_REVIEW_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: FRAUDSTREAM_REVIEW_PAGE_PORT, 8080).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def command(host: str | None, port: int | None, log_level: str) -> None:
    """Serve the review page: queue, cases, verdicts, stats, users; JSON API under /api; /metrics; /health."""
    from fraudstream.review_queue.web.serve import serve

    settings = load_settings(host=host, page_port=port)
    if not settings.redis_url:
        raise click.ClickException("no Redis: set REDIS_URL or FRAUDSTREAM_REVIEW_REDIS_URL")
    serve(settings, log_level)
