"""The ``recstream`` command line.

Connection and security settings are options of the group (``recstream
--broker HOST:PORT worker``); each command has flags for the other settings it
uses; every setting is also a ``RECSTREAM_*`` variable. Commands of packages
above ``streams`` (``bench``, ``eval``) come in as ``recstream.commands``
entry points.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable, Literal, get_args, get_origin

import click
from aiokafka.errors import KafkaConnectionError

from streams.settings import Settings, SettingsError, load_settings

# Where the cluster is, how to reach it and what the topics are called: given
# once, before the command (``recstream --broker HOST:PORT status``), or by
# environment. Each command takes the other settings it uses as its own flags.
CONNECTION = (
    "broker", "topic_prefix", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
    "ssl_cafile", "ssl_certfile", "ssl_keyfile",
)  # fmt: skip
# a worker reads every setting
WORKER = tuple(name for name in Settings.model_fields if name not in CONNECTION)
# what `recstream explain` ranks with, as the worker does (streams.app.candidate_search)
CANDIDATES = ("top_k", "ann_min_items", "ann_candidates", "ann_ef_search")
ENTRY_POINTS = "recstream.commands"


def _flag_type(name: str) -> Any:
    """click type for a settings field, from its annotation."""
    annotation = Settings.model_fields[name].annotation
    choices = get_args(annotation) if get_origin(annotation) is Literal else ()
    if choices:
        return click.Choice(list(choices))
    if annotation is int:
        return int
    if annotation is float:
        return float
    if annotation in (Path, Path | None):
        return click.Path(path_type=Path)
    return str


def setting_flags(names: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One flag per named setting (``--data-dir`` for ``data_dir``...), each
    passed as a keyword argument of that name (``None`` when not given)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            description = Settings.model_fields[name].description
            flag = click.option("--" + name.replace("_", "-"), name, type=_flag_type(name), default=None,
                                help=f"{description} [env RECSTREAM_{name.upper()}]")
            command = flag(command)
        return command

    return decorate


def with_settings(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give the command flags for the named settings and pass it a
    ``settings`` object: ``RECSTREAM_*`` variables, overridden by the group's
    connection flags, overridden by the command's own."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            overrides = {**(click.get_current_context().obj or {}), **{name: kwargs.pop(name) for name in names}}
            try:
                settings = load_settings(**overrides)
            except SettingsError as exc:
                raise click.UsageError(f"invalid settings: {exc}") from exc
            try:
                return command(*args, settings=settings, **kwargs)
            except KafkaConnectionError as exc:
                raise click.ClickException(
                    f"broker {settings.bootstrap_servers} is not reachable ({exc}); start one with `recstream broker` or set RECSTREAM_BROKER"
                ) from exc

        return setting_flags(names)(wrapper)

    return decorate


class Commands(click.Group):
    """recstream's own commands and those other packages register as
    ``recstream.commands`` entry points (``bench`` and ``eval`` come from
    ``bench/``, which sits above ``streams``), loaded when named."""

    def _registered(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS) if ep.name not in self.commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self._registered()])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in (registered := self._registered()):
            command = registered[name].load()
        return command


@click.group(cls=Commands)
@setting_flags(CONNECTION)
@click.pass_context
def main(ctx: click.Context, **connection: Any) -> None:
    """recstream: real-time recommendations from a Kafka clickstream.

    Connection and security settings go here, before the command, or in
    RECSTREAM_* variables; every setting can be given as a variable.
    """
    ctx.obj = {name: value for name, value in connection.items() if value is not None}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9092, show_default=True, type=int)
def broker(host: str, port: int) -> None:
    """Run the embedded Kafka-compatible broker (memory only) in the foreground."""
    from streams.kafka.broker import BrokerError, EmbeddedBroker

    embedded = EmbeddedBroker(host, port)
    try:
        embedded.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"bootstrap={embedded.bootstrap}", nl=True)
    sys.stdout.flush()
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and embedded.process is not None and embedded.process.poll() is None:
            time.sleep(0.2)
    finally:
        embedded.stop()
    if not stopping:
        raise click.ClickException("broker exited unexpectedly")


@main.command()
@with_settings(*WORKER)
def worker(settings: Settings) -> None:
    """Run a stream worker (same as `faust -A streams.app worker`)."""
    from streams.kafka.admin import TopicError
    from streams.web.health import EndpointError
    from streams.worker import run_worker

    try:
        run_worker(settings)
    except (TopicError, EndpointError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--replaces", "old_app_id", default=None, metavar="OLD_APP_ID", help="The app being replaced (default: RECSTREAM_APP_ID from the environment, else recstream); only named in the printed clean-up")
@click.option("--output-topic", default=None, help="Send the lists made before catching up to this topic (full name, created compacted) instead of dropping them")
@with_settings(*(name for name in WORKER if name not in ("hold_lists_until_caught_up", "held_lists_topic")))
def rebuild(settings: Settings, old_app_id: str | None, output_topic: str | None) -> None:
    """Rebuild state from the start of `events` into a new app (--app-id NEW) beside the running one.

    Runs a worker of the new app (new consumer group, new tables and
    changelogs) that publishes no lists to `recommendations` until it has
    caught up with the end offsets `events` had when it started; then it logs
    "caught up; safe to switch" and carries on as a normal worker.
    """
    from streams.kafka.admin import TopicError
    from streams.ops.rebuild import RebuildError, default_old_app_id, old_app_resources, rebuild_settings
    from streams.settings import SettingsError as InvalidSettings
    from streams.worker import run_worker

    old = old_app_id or default_old_app_id(settings)
    try:
        new_settings = rebuild_settings(settings, old, output_topic)
    except (RebuildError, InvalidSettings) as exc:
        raise click.ClickException(str(exc)) from exc
    held = f"sent to {new_settings.held_lists_topic}" if new_settings.held_lists_topic else "dropped"
    click.echo(f"rebuilding app {new_settings.app_id} from the start of {settings.topic('events')} beside {old}; "
               f"lists are {held} until it has caught up, then go to {settings.topic('recommendations')}")
    click.echo(f"after the switch (stop {old}'s workers), delete {old}'s consumer group {old} and topics: {', '.join(old_app_resources(settings, old))}")
    sys.stdout.flush()
    try:
        run_worker(new_settings)
    except TopicError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("user_ids", nargs=-1, required=True)
@with_settings()
def forget(settings: Settings, user_ids: tuple[str, ...]) -> None:
    """Delete users' state and list (publishes a `forget` event per user)."""
    from schemas import InvalidRecord
    from streams.ops.forget import forget_users

    try:
        sent = asyncio.run(forget_users(settings, list(user_ids)))
    except InvalidRecord as exc:
        raise click.UsageError(f"cannot forget that user id: {exc.detail}") from exc
    for request in sent:
        click.echo(f"forget requested for {request['user_id']} (event {request['event_id']})")


@main.group()
def topics() -> None:
    """Create or describe recstream's topics (Kafka admin API)."""


@topics.command("create")
@with_settings("partitions", "replication_factor", "app_id")
def topics_create(settings: Settings) -> None:
    """Create the topics that do not exist yet, with recstream's layout."""
    from streams.kafka.admin import TopicError, ensure_topics

    try:
        created = asyncio.run(ensure_topics(settings))
    except TopicError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist with the expected partitions")


@topics.command("describe")
@with_settings("partitions", "app_id")
def topics_describe(settings: Settings) -> None:
    """Partitions, configs, end offsets and the worker group's lag."""
    from rich.console import Console
    from rich.table import Table

    from streams.kafka.admin import describe_topics

    table = Table("topic", "partitions", "cleanup.policy", "retention.ms", "records", f"lag ({settings.app_id})")
    for t in asyncio.run(describe_topics(settings)):
        if not t.exists:
            table.add_row(t.name, "missing", "", "", "", "")
            continue
        lag = "" if t.group_lag is None else str(t.group_lag)
        table.add_row(t.name, str(t.partitions), t.config.get("cleanup.policy", ""), t.config.get("retention.ms", ""), str(t.end_offset), lag)
    Console().print(table)


@main.group()
def load() -> None:
    """Publish a dataset to the input topics."""


@load.command("movielens")
@click.option("--path", "path", type=click.Path(path_type=Path), default=None, help="Folder with ml-100k.inter/.item or u.data/u.item (fetched when absent)")
@click.option("--limit", type=int, default=None, help="Publish only the first N ratings (by time)")
@click.option("--catalog-wait", type=float, default=300.0, show_default=True, help="Seconds to wait for the worker to encode the items before publishing events (0: do not wait)")
@with_settings("app_id", "data_dir")
def load_movielens(settings: Settings, path: Path | None, limit: int | None, catalog_wait: float) -> None:
    """Publish MovieLens-100K items and ratings (as `rate` events, in time order)."""
    from streams.ops.loading import load_movielens_command

    load_movielens_command(settings, path, limit, catalog_wait)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default=None, help="Input format (default: from the extension: .jsonl/.ndjson/.json, .csv/.tsv, .parquet; .gz allowed for text)")
@click.option("--map", "mappings", multiple=True, metavar="FIELD=COLUMN", help="Read event FIELD from COLUMN (repeatable), e.g. --map user_id=userId --map ts=timestamp")
@click.option("--type", "default_type", default=None, help="Event type for rows without a type column (e.g. rate)")
@click.option("--ts-unit", type=click.Choice(["s", "ms"]), default="ms", show_default=True, help="Unit of numeric ts cells (MovieLens uses s); ISO-8601 cells need none")
@click.option("--delimiter", default=",", show_default=True, help="CSV cell delimiter (.tsv files default to tab)")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write every rejected row here as JSONL (line, reason, detail, row)")
@click.option("--dry-run", is_flag=True, help="Validate and report only; publish nothing (no broker needed)")
@with_settings("max_record_bytes", "max_text_chars")
def backfill(
    settings: Settings, file: Path, fmt: str | None, mappings: tuple[str, ...], default_type: str | None,
    ts_unit: str, delimiter: str, errors_path: Path | None, dry_run: bool,
) -> None:
    """Publish historical events from a JSONL, CSV or Parquet FILE to `events`.

    Every row is validated with the worker's own decoder; rejected rows are
    reported and not published. Rows without event_id get a stable id.
    """
    from streams.kafka.admin import TopicError
    from streams.ops.backfill import BackfillError, backfill_command, detect_format, parse_mapping

    try:
        backfill_command(
            settings, file, fmt=detect_format(file, fmt), mapping=parse_mapping(mappings), default_type=default_type,
            ts_unit=ts_unit, delimiter=delimiter, dry_run=dry_run, errors_path=errors_path,
        )
    except (BackfillError, TopicError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--from", "start", required=True, metavar="earliest|latest|TIMESTAMP|OFFSETS", help="earliest, latest, an ISO-8601 time or epoch ms (first record at or after it; UTC without a zone), or PARTITION:OFFSET[,...]")
@click.option("--dry-run", is_flag=True, help="Print the offsets it would commit; commit nothing")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON")
@with_settings("app_id", "session_timeout_s")
def replay(settings: Settings, start: str, dry_run: bool, as_json: bool) -> None:
    """Move the worker group's (--app-id) offsets on `events`; refuses while a worker runs."""
    import json

    from rich.console import Console

    from streams.ops.replay import ReplayError, parse_start, plan_table
    from streams.ops.replay import replay as run_replay

    try:
        plan = asyncio.run(run_replay(settings, parse_start(start), dry_run))
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"group": settings.app_id, "topic": plan.topic, "from": plan.start.describe(), "committed": plan.committed,
                               "partitions": [m.as_dict() for m in plan.moves]}, indent=2))
        return
    Console().print(plan_table(plan))
    if dry_run and plan.group.active:
        click.echo(f"warning: group {settings.app_id} is active ({plan.group.state}, {len(plan.group.members)} member(s)); stop its workers before replaying")
    click.echo("dry run: nothing committed" if dry_run else f"committed; workers of {settings.app_id} start from 'after' on their next start")


@main.command()
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="Seconds between the two end-offset samples that give events/s and lists/s")
@click.option("--json", "as_json", is_flag=True, help="Print the same as JSON")
@click.option("--metrics-url", "metrics_urls", multiple=True, metavar="URL",
              help="Also read a worker's /metrics (e.g. http://127.0.0.1:9464/metrics; repeatable, one per worker)")
@with_settings("app_id")
def status(settings: Settings, interval: float, as_json: bool, metrics_urls: tuple[str, ...]) -> None:
    """Per topic and partition: end offsets, the worker group's committed offsets and lag, rates, dead letters by reason."""
    import json

    from rich.console import Console

    from streams.ops.status import StatusError, collect_status, fetch_worker_metrics, status_tables, worker_summary, worker_table

    current = asyncio.run(collect_status(settings, interval))
    workers = {}
    for url in metrics_urls:
        try:
            workers[url] = worker_summary(asyncio.run(fetch_worker_metrics(url)))
        except StatusError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({**current.as_dict(settings), **({"workers": workers} if workers else {})}, indent=2))
        return
    console = Console()
    for renderable in status_tables(current, settings):
        console.print(renderable)
    for url, summary in workers.items():
        console.print(worker_table(url, summary))


@main.command()
@click.option("--user", "user_id", default=None, help="Only this user's lists")
@click.option("--json", "as_json", is_flag=True, help="Print raw JSON records")
@click.option("--follow/--no-follow", default=True, help="Keep waiting for new lists")
@with_settings()
def tail(settings: Settings, user_id: str | None, as_json: bool, follow: bool) -> None:
    """Print recommendation lists as they arrive."""
    from streams.ops.tail import tail_recommendations

    try:
        asyncio.run(tail_recommendations(settings, user_id, as_json, follow))
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--users", default=5, show_default=True, help="How many users to show")
@click.option("--limit", type=int, default=None, help="Publish only the first N ratings")
@click.option("--keep-data", is_flag=True, help="Keep the worker's data dir afterwards")
@with_settings("app_id", "data_dir")
def demo(settings: Settings, users: int, limit: int | None, keep_data: bool) -> None:
    """Embedded broker + worker + MovieLens-100K, end to end, then stop."""
    from streams.ops.demo import run_demo

    sys.exit(run_demo(settings, users=users, limit=limit, keep_data=keep_data))


@main.command()
@click.argument("user_id")
@click.option("--png", type=click.Path(path_type=Path), default=None, help="Write the interest-weight chart here (default: <data-dir>/explain-USER.png)")
@with_settings("app_id", "data_dir", *CANDIDATES)
def explain(settings: Settings, user_id: str, png: Path | None) -> None:
    """Show a user's interests and why each listed item is there."""
    from streams.app import candidate_search
    from streams.ops.explain import explain_user

    png = png or settings.data_dir / f"explain-{user_id}.png"
    sys.exit(asyncio.run(explain_user(settings, user_id, png, candidate_search(settings))))


@main.command()
@click.argument("item_id")
@click.option("-k", "k", type=click.IntRange(min=1), default=None, help="How many items (default: the worker's RECSTREAM_TOP_K)")
@click.option("--kind", type=click.Choice(["blend", "similar", "often_after"]), default="blend", show_default=True,
              help="similar: nearest by text; often_after: what users engage next; blend: both")
@click.option("--url", "url", default=None, metavar="URL",
              help="A worker's API (e.g. http://127.0.0.1:9464); default: RECSTREAM_API_ADVERTISED_URL, else http(s)://METRICS_HOST:METRICS_PORT")
@click.option("--json", "as_json", is_flag=True, help="Print the worker's JSON answer")
@with_settings("metrics_host", "metrics_port", "api_advertised_url", "api_token", "api_ssl_certfile", "api_ssl_keyfile")
def related(settings: Settings, item_id: str, k: int | None, kind: str, url: str | None, as_json: bool) -> None:
    """Items related to ITEM_ID (similar by text, often engaged after it), from a running worker."""
    import json

    from rich.console import Console

    from streams.kafka.security import api_client_ssl
    from streams.ops.related import RelatedError, fetch_related, related_table
    from streams.web.api import advertised_url

    if url is None and not settings.metrics_port and not settings.api_advertised_url:
        raise click.UsageError("give the worker's API with --url, or set RECSTREAM_METRICS_PORT (or RECSTREAM_API_ADVERTISED_URL) as the worker has it")
    base = url or advertised_url(settings)
    client_ssl = api_client_ssl(settings) if base.startswith("https://") else None
    try:
        answer = asyncio.run(fetch_related(base, item_id, k, kind, settings.api_token.get_secret_value(), client_ssl))
    except RelatedError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    Console().print(related_table(answer))


if __name__ == "__main__":
    main()
