"""The app's entry point: builds and wires the Faust app (composition root).

This is the one module that imports everything: settings, topics and tables
from ``streams``, the pure models, and the agents. Everything else receives
what it needs through arguments. ``faust -A streams.app worker`` finds the
module-level ``app``, built lazily from the environment.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from threadpoolctl import threadpool_limits

from agents.catalog import register_catalog_agent
from agents.deps import AgentDeps, EncoderSlot
from agents.events import register_events_agent
from models.ann import AnnParams
from models.catalog import CandidateSearch, ItemCatalog, apply_stored_item
from models.encoder import TextEncoder
from models.graph import GraphParams
from models.explain import interests, weight_timeline
from models.guard import MINUTE_MS, GuardParams, suspected
from models.interest import decode_state
from models.interest import InterestParams
from models.ranking import RankingParams
from schemas import Limits
from streams.kafka import topics
from streams.web.health import ObservabilityServer, lag_refresher, readiness_problems, users_refresher
from streams.web.metrics import Readers, WorkerMetrics
from streams.ops.rebuild import CatchUpGate
from streams.kafka.security import ssl_context
from streams.settings import Settings, load_settings
from streams.state.faust_fixes import cap_fetch_wait, drain_producer_buffer_on_flush, mark_offsets_processed
from streams.state.tables import item_graph_table, item_vector_table, recover_to_true_end, user_state_table

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
    broker is Tansu, see :func:`streams.worker.is_tansu`)."""
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
    credentials = broker_credentials(settings)
    if credentials is not None:
        config["broker_credentials"] = credentials
    return config


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
            ",".join(f"p{p}@{o}" for p, o in sorted(deps.snapshot_offsets.items())) or "-",
        )

    app.recstream = deps  # type: ignore[attr-defined]  # for tests and tools
    return app


def observability_server(app: faust.App, sock: socket.socket) -> ObservabilityServer:
    """The ``/metrics``, ``/healthz``, ``/ready`` and ``/dashboard`` server of
    an app built by :func:`build_app`, listening on ``sock`` (see
    :mod:`streams.web.health`)."""
    deps: AgentDeps = app.recstream  # type: ignore[attr-defined]
    return ObservabilityServer(
        sock,
        deps.metrics,
        lambda: readiness_problems(app, lambda: deps.encoder.loaded is not None),
        user_view=lambda user_id: dashboard_user_view(deps, user_id),
        dashboard_extras=lambda: {"suspected_bots": list(reversed(deps.counters.suspected_bots)), "model_version": deps.model_version},
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


def __getattr__(name: str) -> Any:
    # PEP 562: build `app` on first access, so importing this module (e.g. for
    # `build_app`) does not read the environment or declare anything.
    if name == "app":
        import asyncio

        from streams.worker import is_tansu, wait_for_broker_and_topics

        global app
        settings = asyncio.run(wait_for_broker_and_topics(load_settings()))
        app = build_app(settings, tansu=asyncio.run(is_tansu(settings)))
        return app
    raise AttributeError(name)
