"""The ``fraudstream`` command: one sub-command a module, imported only when used."""

from __future__ import annotations

import importlib

import click

#: sub-command name -> module (inside ``fraudstream.cli``) that defines ``command``.
COMMANDS: dict[str, str] = {
    "simulate": "simulate",
    "train": "train",
    "score": "score",
    "evaluate": "evaluate",
    "backtest": "backtest",
    "worker": "worker",
    "replay": "replay",
    "demo": "demo",
    "bench": "bench",
    "review": "review",
    "users": "users",
    "labels": "labels",
    "state": "state",
}

HELP: dict[str, str] = {
    "simulate": "Generate a sample transaction stream (handbook method, optional novel attack).",
    "train": "Build features, train the cascade's models, calibrate thresholds, write a model directory.",
    "score": "Score a date range of a file offline with a model directory (batch inference).",
    "evaluate": "Handbook protocol: prequential folds, AUC/AP/CP@100, cascade figures.",
    "backtest": "Replay a period through the worker's scoring with chargebacks and simulated analysts.",
    "worker": "Run the stream worker: score transactions from Kafka, write decisions.",
    "replay": "Replay a transaction file to Kafka in event-time order.",
    "demo": "Start broker, Redis, worker, metrics and review page, and replay a sample stream.",
    "bench": "Benchmark suite: kernel, worker end to end, latency, scale, memory (tables).",
    "review": "Serve the analysts' review page and its JSON API.",
    "users": "Manage the review page's users: add, remove, list, set-role.",
    "labels": "Export the labels kept by the review workbench (Parquet or CSV).",
    "state": "The worker's state epoch in Redis: show it; after exit code 4, rebuild it from Kafka or accept empty.",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use, so ``--help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(f"fraudstream.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fraudstream.cli.{module_name}":
                return None
            raise
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="fraudstream")
def cli() -> None:
    """fraudstream: real-time fraud detection for card transactions."""


if __name__ == "__main__":
    cli()
