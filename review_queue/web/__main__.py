"""``python -m fraudstream.review_queue.web``: the same as ``fraudstream review``."""

from fraudstream.cli.review import command

if __name__ == "__main__":
    command()
