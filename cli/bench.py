"""``fraudstream bench``: the benchmark suite (kernel, worker end to end, latency, scale, memory) as tables."""

from __future__ import annotations

import json

import click

SECTIONS = ("kernel", "worker", "latency", "scale", "memory")


@click.command("bench")
@click.option("--quick", is_flag=True, help="Every table with fewer and shorter runs (under 2 minutes).")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Model root or version directory to benchmark (default: train a bench model, cached).")
@click.option("--only", "only", multiple=True, type=click.Choice(SECTIONS),
              help="Run only these sections (repeatable).")
@click.option("--soak", "soak_s", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Length of the memory soak (s); the quick run takes the 1,000 tx/s latency run.")
@click.option("--soak-rate", type=click.FloatRange(min=1), default=1000.0, show_default=True,
              help="Offered rate of the memory soak (tx/s), e.g. the highest rate the latency table keeps under 50 ms.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures to this JSON file.")
def command(quick: bool, model_dir: str | None, only: tuple[str, ...], soak_s: float, soak_rate: float,
            json_path: str | None) -> None:
    """Run the benchmark suite on an embedded broker and Redis and print its tables (median [min, max])."""
    from fraudstream.bench.suite import SuiteConfig, as_jsonable, run_suite, summary_rows
    from fraudstream.detectors.bundle import ModelBundleError, resolve_bundle_dir

    if model_dir is not None:
        try:
            resolve_bundle_dir(model_dir)
        except ModelBundleError as exc:
            raise click.BadParameter(str(exc), param_hint="--model-dir") from None
    config = SuiteConfig.quick() if quick else SuiteConfig.full(soak_s, soak_rate)
    result = run_suite(config, model_dir, set(only or SECTIONS), echo=lambda text: click.echo(text))
    for line in summary_rows(result):
        click.echo(line)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(as_jsonable(result), handle, indent=1, default=float)
