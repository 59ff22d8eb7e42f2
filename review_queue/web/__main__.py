"""``python -m fraudstream.review_queue.web``: serve the page with the settings of the environment (as
``fraudstream review`` does without options)."""

import sys

from fraudstream.detectors.env_settings import SettingsError
from fraudstream.review_queue.settings import ReviewSettings
from fraudstream.review_queue.web.serve import serve

if __name__ == "__main__":
    try:
        settings = ReviewSettings.from_env()
    except SettingsError as exc:
        sys.exit(f"bad review settings: {exc}")
    if not settings.redis_url:
        sys.exit("no Redis: set REDIS_URL or FRAUDSTREAM_REVIEW_REDIS_URL")
    serve(settings)
