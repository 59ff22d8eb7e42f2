"""Run the review page with uvicorn (what ``fraudstream review`` and ``python -m fraudstream.review_queue.web`` do)."""

from __future__ import annotations

import sys

from fraudstream.review_queue.settings import ReviewSettings


def serve(settings: ReviewSettings, log_level: str = "info") -> None:
    """Serve until interrupted; ``settings.redis_url`` must be set."""
    import uvicorn

    from fraudstream.review_queue.web.app import create_app

    print(f"review page: http://{settings.host}:{settings.page_port}/", file=sys.stderr, flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.page_port, log_level=log_level,
                access_log=False)
