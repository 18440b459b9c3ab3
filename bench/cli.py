"""``recstream eval`` and ``recstream bench``: the evaluation and benchmark
commands. They reach the CLI as ``recstream.commands`` entry points
(pyproject.toml), so ``streams`` never imports ``bench``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from streams.cli import WORKER, with_settings
from streams.settings import Settings


@click.group("eval")
def evaluate() -> None:
    """Measure recommendation quality."""


@evaluate.command("movielens")
@click.option("--mode", type=click.Choice(["pipeline", "offline"]), default="pipeline", show_default=True, help="pipeline: embedded broker + worker; offline: the same models code without Kafka")
@click.option("--path", "path", type=click.Path(path_type=Path), default=None, help="MovieLens folder (fetched when absent)")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write metrics JSON here (and a PNG chart beside it)")
@with_settings(*WORKER)
def eval_movielens(settings: Settings, mode: str, path: Path | None, output: Path | None) -> None:
    """Leave-last-out HR@10/NDCG@10/MRR@10 on MovieLens-100K with baselines."""
    from bench.run_eval import run_eval

    run_eval(settings, mode, path, output)


@click.command()
@click.option("--quick", is_flag=True, help="Small sizes and short runs (under 5 minutes on 2 cores); skips scale unless --only names it")
@click.option("--only", default=None, help="Comma-separated sections: encoder,retrieval,pipeline,state,freshness,scale,serving (default: all)")
@click.option("--skip", default=None, help="Comma-separated sections to leave out")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write results JSON here (and PNG charts beside it)")
@click.option("--users", type=int, default=None, help="Synthetic users (quick 500, full 5000)")
@click.option("--items", type=int, default=None, help="Synthetic catalog items (quick 200, full 2000)")
@click.option("--events", type=int, default=None, help="Synthetic events for the throughput runs (quick 4000, full 50000)")
@click.option("--seed", type=int, default=42, show_default=True, help="Workload seed (same seed, same topics)")
@click.option("--retrieval-sizes", default=None, help="Catalog sizes for retrieval, e.g. 1000,10000 (quick up to 100k, full up to 1M)")
@click.option("--rates", default="500,1000,2000", show_default=True, help="Freshness: produced events/s, comma-separated")
@click.option("--rate-duration", type=float, default=None, help="Freshness: seconds per rate (quick 4, full 20)")
@click.option("--no-int8", is_flag=True, help="Skip the int8 quantised encoder probe")
@with_settings(*WORKER)
def bench(
    settings: Settings,
    quick: bool,
    only: str | None,
    skip: str | None,
    output: Path | None,
    users: int | None,
    items: int | None,
    events: int | None,
    seed: int,
    retrieval_sizes: str | None,
    rates: str,
    rate_duration: float | None,
    no_int8: bool,
) -> None:
    """Performance harness: ceilings vs pipeline, freshness, encoder, retrieval, state, scale.

    Starts an embedded broker unless `recstream --broker URL bench` (or
    RECSTREAM_BROKER) names one; work files go to <data-dir>/bench.
    """
    from bench.run_bench import BenchOptions, parse_sections, run_bench

    def ints(text: str | None) -> list[int]:
        return [int(float(x)) for x in text.split(",") if x.strip()] if text else []

    try:
        sections = parse_sections(only, skip, quick)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    explicit_broker = "broker" in (click.get_current_context().obj or {}) or "RECSTREAM_BROKER" in os.environ
    options = BenchOptions(
        sections=sections,
        quick=quick,
        output=output,
        users=users,
        items=items,
        events=events,
        seed=seed,
        retrieval_sizes=ints(retrieval_sizes),
        rates=ints(rates),
        rate_duration_s=rate_duration,
        broker=settings.broker if explicit_broker else None,
        int8=not no_int8,
    )
    run_bench(settings, options)
