"""The analysts' review page and JSON API (Starlette, Jinja2): ``create_app`` builds it."""

from fraudstream.review_queue.web.app import create_app

__all__ = ["create_app"]
