"""The app's entry point: builds and wires the Faust app (composition root).

This is the one module that imports everything: settings, topics and tables
from ``streams``, the pure models, and the agents. Everything else receives
what it needs through arguments. ``faust -A streams.app worker`` finds the
module-level ``app``, built lazily from the environment.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import TP
from threadpoolctl import threadpool_limits

from agents.catalog import register_catalog_agent
from agents.deps import AgentDeps, EncoderSlot
from agents.events import process_held_events, register_events_agent
from models.ann import AnnParams
from models.global_graph import END_OF_INPUT, DeltaBoard, EpochParams, epoch_of
from models.catalog import CandidateSearch, ItemCatalog, apply_stored_item
from models.encoder import TextEncoder
from models.graph import GraphParams
from models.errors import ModelError
from models.explain import interests, weight_timeline
from models.guard import MINUTE_MS, GuardParams, suspected
from models.interest import DEFAULT_PARAMS, InterestParams, UserState, decode_state, fold_pending, state_header
from models.kernels import warm_up as warm_up_kernels
from models.ranking import RankingParams, rank_user
from models.recommend import interest_summary
from models.related import KINDS as RELATED_KINDS, SimilarCache, related_items
from models.serving import cold_start_list, interests_view, rank_candidates
from schemas import TICK_KEY, Limits, Recommendation, RecommendedItem, encode_record, tick_event
from streams.kafka import topics
from streams.kafka.admin import is_tansu, wait_for_broker_and_topics
from streams.web.health import ObservabilityServer, lag_refresher, readiness_problems, users_refresher
from streams.web.metrics import Readers, WorkerMetrics
from streams.ops.rebuild import CatchUpGate
from streams.kafka.security import api_client_ssl, api_server_ssl, ssl_context
from streams.state.graph_deltas import DeltaFeed, Ticker
from streams.state.latest import LatestLists
from streams.web.api import ApiLimits, Local, Location, Remote, ServingApi, ServingBackend, Unavailable, advertised_url
from streams.web.related import KINDS as RELATED_ROUTE_KINDS, ApiRoutes, RelatedItemsApi
from streams.settings import Settings, load_settings
from streams.state.faust_fixes import cap_fetch_wait, drain_producer_buffer_on_flush, mark_offsets_processed
from streams.state.tables import item_graph_table, item_vector_table, read_in_partition, recover_to_true_end, user_state_table

log = logging.getLogger(__name__)

MODEL_VERSION = "recstream-2"


def faust_dir(settings: Settings) -> Path:
    """Where the app's RocksDB tables live: per app id, because Faust names
    the stores by table only (``user-state-0.db``), and another app's stores
    in the same place (a rebuild, a renamed app) would be taken for this
    app's, offsets and all."""
    return settings.data_dir / "faust" / settings.app_id


def candidate_search(settings: Settings) -> CandidateSearch:
    """When and how ranking switches to ANN candidates (README, "Large catalogs")."""
    # faiss on one thread: the worker's loop calls it with small batches,
    # and its OpenMP pool would compete with the encoder's threads
    return CandidateSearch(
        min_items=settings.ann_min_items,
        per_vector=settings.ann_candidates,
        ann=AnnParams(ef_search=settings.ann_ef_search, threads=1),
    )


def guard_params(settings: Settings) -> GuardParams:
    """The bot guard's limits (README, "Abnormal behaviour")."""
    return GuardParams(
        max_events=settings.bot_max_events_per_minute,
        rate_window_ms=MINUTE_MS,
        flag_windows=settings.bot_flag_minutes,
        repeat_window_ms=settings.repeat_window_minutes * MINUTE_MS,
    )


def faust_config(settings: Settings, tansu: bool = False) -> dict[str, Any]:
    """Faust App keyword arguments derived from settings (``tansu``: the
    broker is Tansu, see :func:`streams.kafka.admin.is_tansu`)."""
    config: dict[str, Any] = dict(
        broker=settings.broker,
        store="rocksdb://",
        datadir=str(faust_dir(settings).resolve()),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 10),
        broker_rebalance_timeout=max(10.0, settings.session_timeout_s * 2),
        broker_commit_interval=1.0,
        table_standby_replicas=0,
        producer_linger=0.0,
        recovery_consistency_check=not tansu,
    )
    if serves_api(settings):
        # the consumer group's assignor hands every worker this URL, which is
        # how a worker finds the owner of a user's partition (streams.web.api)
        config["canonical_url"] = advertised_url(settings)
    credentials = broker_credentials(settings)
    if credentials is not None:
        config["broker_credentials"] = credentials
    return config


def serves_api(settings: Settings) -> bool:
    """Whether the worker serves the ``/users/...`` API (on the metrics port)."""
    return bool(settings.api_enabled and settings.metrics_port)


def broker_credentials(settings: Settings) -> Any:
    """SASL/SSL credentials for Faust, or ``None`` for PLAINTEXT."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )


def topic_by_name(app: faust.App, specs: dict[str, topics.TopicSpec], name: str) -> faust.TopicT:
    """One of recstream's topics (full name), raw bytes in and out."""
    spec = specs[name]
    return app.topic(spec.name, partitions=spec.partitions, config=spec.config,
                     key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def build_app(settings: Settings, tansu: bool = False) -> faust.App:
    """A fully wired Faust app: topics, tables, agents."""
    faust_dir(settings).mkdir(parents=True, exist_ok=True)
    # numpy's BLAS on one thread: the events agent's products are small and
    # run on the event loop, where waking a BLAS thread pool per call cost
    # more than the work (3x slower ranking on 2 busy cores). The encoder's
    # torch thread pool is separate and keeps its threads.
    threadpool_limits(limits=1, user_api="blas")
    # compiled kernels loaded (or compiled, once per machine) before the
    # first batch, not inside it
    warm_up_kernels()
    app = faust.App(settings.app_id, **faust_config(settings, tansu))
    specs = {spec.name: spec for spec in topics.topic_specs(settings)}

    def topic(name: str) -> faust.TopicT:
        return topic_by_name(app, specs, settings.topic(name))

    catalog = ItemCatalog(candidates=candidate_search(settings))

    def mirror_item(item_id: str, value: bytes | None) -> None:
        try:
            apply_stored_item(catalog, item_id, value)
        except Exception:  # a corrupt row must not stop recovery of the rest
            log.exception("cannot mirror item-vector row %r", item_id)

    # one registry per app; totals are read from the agents' counters and the
    # encoder's stats when scraped (deps is bound below, before any scrape)
    def encoder_stats() -> dict[str, Any]:
        loaded = deps.encoder.loaded
        return vars(loaded.stats) if loaded is not None else {}

    metrics = WorkerMetrics(Readers(counters=lambda: vars(deps.counters), encoder=encoder_stats, catalog_items=lambda: len(catalog)))

    def load_encoder() -> TextEncoder:
        encoder = TextEncoder(settings.model or None, settings.device, settings.encode_batch_size)
        encoder.on_model_run = metrics.observe_encode
        return encoder

    deps = AgentDeps(
        settings=settings,
        events_topic=topic(topics.EVENTS),
        items_topic=topic(topics.ITEMS),
        recommendations_topic=topic(topics.RECOMMENDATIONS),
        dead_letter_topic=topic(topics.DEAD_LETTERS),
        user_state=user_state_table(app, settings),
        item_vectors=item_vector_table(app, settings, mirror_item),
        item_graph=item_graph_table(app, settings),
        catalog=catalog,
        encoder=EncoderSlot(load_encoder),
        interest_params=InterestParams(
            half_life_ms=int(settings.half_life_hours * 3600 * 1000),
            history_size=settings.history_size,
            # offsets live in history entries: no more than the history holds
            tracked_offsets=min(DEFAULT_PARAMS.tracked_offsets, settings.history_size),
            dedupe_window=settings.dedupe_window,
            ttl_ms=int(settings.state_ttl_hours * 3600 * 1000),
        ),
        ranking_params=RankingParams(),
        graph_params=GraphParams(),
        limits=Limits(max_record_bytes=settings.max_record_bytes, max_text_chars=settings.max_text_chars),
        model_version=MODEL_VERSION,
        guard_params=guard_params(settings),
        metrics=metrics,
    )
    events_topic = settings.topic(topics.EVENTS)

    def assigned_events_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == events_topic}

    def owned_state_partitions() -> set[int] | None:
        # None until the first recovery is done: the stores are in flux before
        if not app.started or not app.tables.recovery.completed.is_set():
            return None
        return assigned_events_partitions()

    deps.assigned = assigned_events_partitions
    metrics.refreshers.append(lag_refresher(metrics, app, {events_topic, settings.topic(topics.ITEMS)}))
    metrics.refreshers.append(users_refresher(metrics, deps.user_state, owned_state_partitions))
    deps.flush_producer = app.producer.flush
    deps.mark_processed = lambda partition, offsets: mark_offsets_processed(app, TP(events_topic, partition), offsets)
    held = topic_by_name(app, specs, settings.held_lists_topic) if settings.held_lists_topic else None
    gate = CatchUpGate(settings, live=deps.recommendations_topic, held=held)
    deps.lists_topic = gate.topic
    deps.before_events = gate.catalog_loaded
    if not gate.caught_up:

        @app.timer(interval=1.0)
        async def check_caught_up() -> None:
            # a rebuild: lists are held until the group has caught up
            if not gate.caught_up:
                await gate.check()

    @app.on_partitions_assigned.connect
    async def log_assignment(sender: faust.App, assigned: set, **kwargs: object) -> None:
        # one greppable line per rebalance: which events partitions (so which
        # users' state and graphs) this worker owns now
        owned = sorted(tp.partition for tp in assigned if tp.topic == events_topic)
        log.info("assigned events partitions: %s", ",".join(map(str, owned)) or "none")
    register_catalog_agent(app, deps)
    register_events_agent(app, deps)
    if settings.global_graph:
        wire_global_graph(app, deps, topic_by_name(app, specs, topics.graph_deltas_topic(settings)))

    # Faust pauses every stream while more than 100 table writes wait in its
    # producer buffer; one batch writes hundreds (one state per user, graph
    # rows), so that limit turned the worker into a stop-and-go loop.
    app.producer.buffer.max_messages = 20_000
    drain_producer_buffer_on_flush(app)
    if tansu:
        recover_to_true_end(app, settings)
    cap_fetch_wait(settings.fetch_max_wait_ms or (20 if tansu else 500))

    @app.task
    async def warm_up_encoder() -> None:
        # Load the model at start so the first items do not wait for it.
        encoder = await deps.encoder.get()
        deps.model_version = f"{MODEL_VERSION}/{encoder.version}"

    @app.timer(interval=10.0)
    async def report_progress() -> None:
        c = deps.counters
        log.info(
            "progress: events=%d applied=%d lists=%d held_lists=%d dead_letters=%d duplicates=%d redelivered=%d items_encoded=%d catalog=%d"
            " gap_events=%d double_deliveries=%d behind_durable=%d graph_snapshots=%s",
            c.events, c.applied, c.lists, c.held_lists, c.dead_letters, c.duplicates, c.redelivered, c.items, len(catalog), c.gap_events, c.double_deliveries,
            c.behind_durable,
            ",".join(f"p{p}@{o}" for p, o in deps.partition_logs.snapshot_offsets().items()) or "-",
        )

    latest = LatestLists(settings.api_list_cache_users if serves_api(settings) else 0)
    deps.on_list = latest.published
    app.recstream = deps  # type: ignore[attr-defined]  # for tests and tools
    app.recstream_api = (  # type: ignore[attr-defined]
        ApiRoutes([serving_api(app, deps, latest, owned_state_partitions), related_api(deps)]) if serves_api(settings) else None
    )
    return app


def epoch_params(settings: Settings) -> EpochParams:
    """The global graph's epochs as the settings give them (disabled: one
    graph per partition); the worker, the eval and the tests' offline
    comparisons all build them here."""
    return EpochParams(epoch_ms=settings.graph_epoch_ms, delay=settings.graph_delay_epochs, enabled=settings.global_graph)


def wire_global_graph(app: faust.App, deps: AgentDeps, deltas_topic: faust.TopicT) -> None:
    """The global graph (models.global_graph): the worker's board, the feed
    that fills it from graph-deltas, and the ticks for idle partitions."""
    settings = deps.settings
    deps.epochs = epoch_params(settings)
    board = deps.board = DeltaBoard(settings.partitions, deps.epochs)
    deps.deltas_topic = deltas_topic
    async def fold_held() -> None:
        if app.started and not app.should_stop:  # not while the app stops (its producer is gone)
            await process_held_events(deps)

    feed = DeltaFeed(settings, board, fold_held)
    ticker = Ticker(board, settings.tick_interval_ms / 1000, deps.epochs.delay, deps.epochs.epoch_ms, END_OF_INPUT)
    deps.on_delivery = ticker.delivered
    deps.rewind_deltas = feed.rewind
    app.recstream_feed = feed  # type: ignore[attr-defined]  # for tests and tools

    epoch_ms = deps.epochs.epoch_ms

    async def refresh_graph_views() -> None:
        views = {}
        for partition, plog in sorted(deps.partition_logs.items()):
            view = plog.graph
            if view is not None and view.watermark >= 0:
                views[partition] = (max(0, view.watermark - (view.foreign_epoch + 1) * epoch_ms), len(plog.held))
        deps.metrics.set_graph_views(views)

    deps.metrics.refreshers.append(refresh_graph_views)

    @app.task
    async def follow_graph_deltas() -> None:
        await feed.run()

    @app.timer(interval=settings.tick_interval_ms / 1000)
    async def tick_idle_partitions() -> None:
        if not app.started or app.rebalancing:
            return
        owned = deps.assigned()
        def holding(partition: int) -> bool:
            plog = deps.partition_logs.get(partition)
            return plog is not None and bool(plog.held)

        for partition, ts in ticker.due(sorted(owned or ()), holding=holding):
            await deps.events_topic.send(key=TICK_KEY.encode(), value=encode_record(tick_event(ts)), partition=partition)
            deps.counters.ticks += 1


def serving_api(app: faust.App, deps: AgentDeps, latest: LatestLists, owned: Any) -> ServingApi:
    """The lookup/rank/interests API of this worker (``streams.web.api``),
    answering from the user-state table, the latest lists, the catalog and
    the partitions' graphs."""
    settings = deps.settings
    changelog = deps.user_state.changelog_topic.get_topic_name()
    own_url = advertised_url(settings)

    def locate(user_id: str) -> Location:
        partition = topics.key_partition(user_id.encode(), settings.partitions)
        mine = owned()
        if mine is None or app.rebalancing or app.in_recovery:
            return Unavailable("worker starting or recovering its tables")
        if partition in mine:
            return Local(partition)
        for url, assignment in app.assignor.table_metadata(changelog).items():
            if partition in assignment.get(changelog, ()):
                return Remote(url)
        return Unavailable(f"no worker owns partition {partition} right now (rebalancing)")

    def state_of(user_id: str, partition: int) -> UserState | None:
        raw = read_in_partition(deps.user_state, partition, user_id.encode())
        if raw is None:
            return None
        try:
            return decode_state(raw)
        except ModelError:
            log.error("unreadable user state in partition %d; answering as for a new user", partition)
            return None

    def loaded_graph(partition: int) -> Any:
        # .get: a lookup must not make a partition log (PartitionLogs makes one on [])
        plog = deps.partition_logs.get(partition)
        return plog.graph if plog is not None else None

    def graph_of(partition: int) -> Any:
        return loaded_graph(partition) or next((plog.graph for plog in deps.partition_logs.values() if plog.graph is not None), None)

    def lookup(user_id: str, partition: int, k: int | None) -> bytes:
        key = user_id.encode()
        raw = read_in_partition(deps.user_state, partition, key)
        if raw is not None:
            try:
                cached = latest.get(key, state_header(raw).last_offset)  # the header only: this is the hot path
            except ModelError:
                cached = None
            if cached is not None and k is None:
                return cached  # the very bytes on `recommendations`
            if cached is not None:
                body = orjson.loads(cached)
                body["items"] = body["items"][:k]
                return orjson.dumps(body)
        state = state_of(user_id, partition)
        now_ms = int(time.time() * 1000)
        extra: dict[str, Any] = {}
        if state is None:
            graph = graph_of(partition)
            record = cold_start_list(user_id, deps.catalog, graph, k or settings.top_k, at_ts=graph.latest_ts if graph else 0,
                                     generated_at=now_ms, model_version=deps.model_version)
            extra["cold_start"] = True
        else:
            # not among the lists kept (evicted, or ranked before this
            # process owned the partition): ranked now from the same state
            ranked = rank_user(state, deps.catalog, settings.top_k, graph=loaded_graph(partition), at_ts=state.last_event_ts,
                               params=deps.ranking_params, interest=deps.interest_params)
            record = Recommendation(
                user_id=user_id,
                items=[RecommendedItem(item_id=r.item_id, score=r.score, reason=r.reason, because=r.because) for r in ranked[:k]],
                interests=interest_summary(state, deps.catalog),
                trigger_event_id=state.last_event_id,
                event_ts=state.last_event_ts,
                generated_at=now_ms,
                model_version=deps.model_version,
            )
            extra["recomputed"] = True
        body = orjson.loads(encode_record(record))
        return orjson.dumps({**body, **extra})

    def rank(user_id: str, partition: int, items: list[str], k: int | None) -> dict[str, Any]:
        state = state_of(user_id, partition)
        graph = loaded_graph(partition)
        at_ts = state.last_event_ts if state is not None else (graph.latest_ts if graph is not None else 0)
        ranked = rank_candidates(state or UserState(), deps.catalog, graph, items, at_ts,
                                 ranking=deps.ranking_params, interest=deps.interest_params)
        return {
            "user_id": user_id,
            "cold_start": state is None,
            "items": [r.as_dict() for r in ranked[:k]],
            "event_ts": at_ts,
            "model_version": deps.model_version,
        }

    def interests(user_id: str, partition: int) -> dict[str, Any] | None:
        state = state_of(user_id, partition)
        if state is None:
            return None
        fold_pending(state, deps.catalog.vector, deps.interest_params)  # as the user's next event will see it
        return {**interests_view(user_id, state, deps.catalog, deps.interest_params), "partition": partition}

    limits = ApiLimits(max_body_bytes=settings.api_max_body_bytes, max_items=settings.api_max_items, max_k=settings.api_max_k,
                       timeout_s=settings.api_timeout_ms / 1000)
    backend = ServingBackend(locate=locate, lookup=lookup, rank=rank, interests=interests)
    return ServingApi(backend, limits, token=settings.api_token.get_secret_value(), own_url=own_url, client_ssl=api_client_ssl(settings))


def newest_graph_view(deps: AgentDeps) -> "tuple[int, Any] | None":
    """The most up-to-date view of the global graph this worker holds:
    (partition, graph), or ``None`` before its first batch (or when it owns
    no partition). Each owned partition's view has all its own events and
    the other partitions' ops of the epochs up to its ``foreign_epoch``; the
    one with the highest ``foreign_epoch`` (then watermark) lacks the least.
    Not the item-graph table: that holds the snapshots of the same views,
    older. With the global graph off it is one partition's graph only."""
    best: tuple[tuple[int, int, int, int], int, Any] | None = None
    for partition, plog in list(deps.partition_logs.items()):  # .items(): never makes a log
        graph = plog.graph
        if graph is None:
            continue
        key = (graph.foreign_epoch, graph.watermark, graph.latest_ts, -partition)
        if best is None or key > best[0]:
            best = (key, partition, graph)
    return None if best is None else (best[1], best[2])


def related_api(deps: AgentDeps) -> RelatedItemsApi:
    """``/items/{item_id}/related`` of this worker (``streams.web.related``):
    the catalog and the newest graph view it holds (:func:`newest_graph_view`),
    decayed to that view's event time, so any worker answers for any item."""
    settings = deps.settings
    assert RELATED_ROUTE_KINDS == RELATED_KINDS, "streams.web.related.KINDS must list models.related.KINDS"
    # an item's nearest items by text, kept until the catalog changes: a
    # product page asks for the same items again and again
    similar_cache = SimilarCache()

    def related(item_id: str, k: int, kind: str) -> dict[str, Any] | None:
        view = newest_graph_view(deps)
        partition, graph = view if view is not None else (None, None)
        # "now" in event time: the newest event or tick the view has seen
        at_ts = max(graph.latest_ts, graph.watermark) if graph is not None else 0
        found = related_items(deps.catalog, graph, item_id, k, at_ts, kind, deps.ranking_params, cache=similar_cache)  # type: ignore[arg-type]
        if found is None:
            return None
        epoch = epoch_of(graph.watermark, deps.epochs) if graph is not None else None
        return {
            "item_id": item_id,
            "kind": kind,
            "items": [r.as_dict() for r in found],
            "graph_epoch": epoch,
            "graph": None if graph is None else {
                "partition": partition,  # whose view: its own events are all in
                "epoch": epoch,
                # every partition's ops of the epochs up to this one are in (-1: none yet; None: global graph off)
                "complete_epoch": graph.foreign_epoch if deps.board is not None else None,
                "event_ts": at_ts,
            },
            "model_version": deps.model_version,
        }

    limits = ApiLimits(max_body_bytes=settings.api_max_body_bytes, max_items=settings.api_max_items, max_k=settings.api_max_k,
                       timeout_s=settings.api_timeout_ms / 1000)
    return RelatedItemsApi(related, limits, token=settings.api_token.get_secret_value(), own_url=advertised_url(settings), default_k=settings.top_k)


def observability_server(app: faust.App, sock: socket.socket) -> ObservabilityServer:
    """The ``/metrics``, ``/healthz``, ``/ready`` and ``/dashboard`` server of
    an app built by :func:`build_app`, listening on ``sock`` (see
    :mod:`streams.web.health`)."""
    deps: AgentDeps = app.recstream  # type: ignore[attr-defined]
    return ObservabilityServer(
        sock,
        deps.metrics,
        lambda: readiness_problems(app, lambda: deps.encoder.loaded is not None),
        api=getattr(app, "recstream_api", None),
        ssl_context=api_server_ssl(deps.settings),
        user_view=lambda user_id: dashboard_user_view(deps, user_id),
        dashboard_extras=lambda: {"suspected_bots": list(reversed(deps.counters.suspected_bots)), "model_version": deps.model_version},
        token=deps.settings.api_token.get_secret_value(),  # the dashboard's JSON holds user data too
    )


def dashboard_user_view(deps: AgentDeps, user_id: str) -> dict[str, Any] | None:
    """The dashboard's user box: the latest list this worker published for
    the user (with reasons) and their interests, now and over event time,
    from the user's state in this worker's partitions."""
    try:
        stored = deps.user_state.get(user_id.encode())
    except Exception:  # noqa: BLE001 - a store in flux (rebalance): nothing to show now
        log.debug("dashboard: no state for a user", exc_info=True)
        stored = None
    record = deps.recent_lists.get(user_id)
    if stored is None and record is None:
        return None
    view: dict[str, Any] = {"user_id": user_id, "list": None, "interests": [], "timeline": None}
    if record is not None:
        view["list"] = {
            "items": [
                {"item_id": i.item_id, "title": (deps.catalog.meta(i.item_id).title if deps.catalog.meta(i.item_id) else ""),
                 "score": i.score, "reason": i.reason, "because": i.because}
                for i in record.items
            ],
            "event_ts": record.event_ts,
            "generated_at": record.generated_at,
            "bot_suspected": record.bot_suspected,
            "model_version": record.model_version,
        }
    if stored is not None:
        state = decode_state(stored)
        view["interests"] = [{"label": v.label, "weight": round(v.weight, 4), "last_active": v.last_active} for v in interests(state, deps.catalog, deps.interest_params)]
        times, series, labels = weight_timeline(state, deps.catalog, deps.interest_params)
        view["timeline"] = {"times": times, "series": [[round(w, 4) for w in s] for s in series], "labels": labels}
        view["events"] = state.event_count
        view["bot_suspected"] = suspected(state, deps.guard_params)
    return view


def app_when_ready(settings: Settings) -> faust.App:
    """:func:`build_app` once the broker answers and the topics exist with
    recstream's layout (a subscription would auto-create source topics with
    the broker's defaults); topics that exist already decide the partition
    count (:func:`streams.kafka.admin.setup_topics`)."""
    settings = asyncio.run(wait_for_broker_and_topics(settings))
    return build_app(settings, tansu=asyncio.run(is_tansu(settings)))


def __getattr__(name: str) -> Any:
    # PEP 562: build `app` on first access, so importing this module (e.g. for
    # `build_app`) does not read the environment or declare anything.
    if name == "app":
        global app
        app = app_when_ready(load_settings())
        return app
    raise AttributeError(name)
