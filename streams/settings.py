"""recstream's settings: one frozen, validated object.

Read once, in one place, from ``RECSTREAM_*`` environment variables; CLI flags
override them by being passed as keyword arguments to :func:`load_settings`.
The settings tables are generated from the fields' descriptions
(``python -m streams.settings --update``): the README lists what a user sets,
docs/operations.md the fields marked ``ADVANCED`` (internal knobs whose
defaults fit every deployment we know of); a test checks both are up to date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BROKER = "kafka://127.0.0.1:9092"

# ``json_schema_extra`` of a field that is machinery rather than something a
# user must decide: listed in docs/operations.md's advanced table, not the README's.
ADVANCED = {"advanced": True}


class SettingsError(ValueError):
    """Settings are missing or invalid (raised with every problem listed)."""


class Settings(BaseSettings):
    """All of recstream's configuration (env prefix ``RECSTREAM_``)."""

    model_config = SettingsConfigDict(env_prefix="RECSTREAM_", frozen=True, extra="forbid")

    # -- Kafka ------------------------------------------------------------
    broker: str = Field(DEFAULT_BROKER, description="Kafka bootstrap URL(s), `kafka://host:port[;host:port]` (plain `host:port` accepted); the default is where `recstream broker` listens")
    topic_prefix: str = Field("", description="Prefix for every topic name (e.g. `staging.`)")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of `events`, `recommendations` and `events-dlq` (the unit of scale; cannot change without a rebuild)")
    replication_factor: int = Field(1, ge=1, le=16, description="Replication factor for topics recstream creates")
    app_id: str = Field("recstream", min_length=1, description="Faust app id: consumer group, changelog topic and table names")
    session_timeout_s: float = Field(10.0, gt=1, le=300, description="Consumer group session timeout; short keeps rebalances fast (Tansu joins after about half of it)", json_schema_extra=ADVANCED)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field("PLAINTEXT", description="Kafka security protocol")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field("PLAIN", description="SASL mechanism when the protocol is SASL_*")
    sasl_username: str = Field("", description="SASL user name (required for `SASL_*`)")
    sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (required for `SASL_*`; a secret string, never printed or logged)")
    ssl_cafile: Path | None = Field(None, description="CA bundle for `SSL`/`SASL_SSL` (must exist; default: the system's)")
    ssl_certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS (must exist)")
    ssl_keyfile: Path | None = Field(None, description="Private key (PEM) of the client certificate (needs `RECSTREAM_SSL_CERTFILE`)")

    # -- state and processing ----------------------------------------------
    data_dir: Path = Field(Path(".recstream"), description="Directory for RocksDB tables (`faust/<app_id>/`; one worker process per directory), downloaded data and demo files")
    batch_size: int = Field(500, ge=1, le=100_000, description="Most events the events agent takes per batch", json_schema_extra=ADVANCED)
    batch_window_ms: int = Field(20, ge=1, le=60_000, description="Longest wait to fill a batch (bounds added latency)", json_schema_extra=ADVANCED)
    fetch_max_wait_ms: int = Field(0, ge=0, le=10_000, description="Longest time a consumer fetch waits for records; 0 = 20 on the embedded broker (it answers a waiting fetch only when the wait ends), 500 (Kafka's default) elsewhere", json_schema_extra=ADVANCED)
    top_k: int = Field(10, ge=1, le=1000, description="Items per recommendation list")
    history_size: int = Field(100, ge=1, le=10_000, description="Recent items kept per user (seen-filtering, sequence signals)")
    half_life_hours: float = Field(336.0, gt=0, description="Half-life of interest weights, in event time")
    dedupe_window: int = Field(32, ge=0, le=4096, description="Event ids remembered per user to drop duplicates (the user's last N arrivals; 0 = offsets only)", json_schema_extra=ADVANCED)
    state_ttl_hours: float = Field(0.0, ge=0, description="Event time after which an inactive user's state (and list) expires; 0 = never")
    rocksdb_write_buffer_mb: int = Field(8, ge=1, le=1024, description="RocksDB memtable size per table partition (two at most); bounds worker memory (Faust's defaults: 3 x 64 MiB and a 2 GiB block cache per partition)", json_schema_extra=ADVANCED)
    rocksdb_block_cache_mb: int = Field(16, ge=1, le=65_536, description="RocksDB block cache per table partition; bounds worker memory", json_schema_extra=ADVANCED)
    ann_min_items: int = Field(50_000, ge=0, description="Active catalog items from which ranking scores ANN candidates (faiss HNSW) instead of every item; 0 = always every item (exact, and the only mode whose lists a restart reproduces bit for bit)", json_schema_extra=ADVANCED)
    ann_candidates: int = Field(200, ge=10, le=10_000, description="Nearest items per user vector (interests, short-term, search) that become candidates in ANN ranking", json_schema_extra=ADVANCED)
    ann_ef_search: int = Field(128, ge=16, le=4_096, description="HNSW search breadth in ANN ranking (recall against latency)", json_schema_extra=ADVANCED)
    max_record_bytes: int = Field(65_536, ge=256, description="Larger input records go to the DLQ", json_schema_extra=ADVANCED)
    max_text_chars: int = Field(2_000, ge=16, description="Longer texts (queries, item text) go to the DLQ", json_schema_extra=ADVANCED)
    bot_max_events_per_minute: int = Field(60, ge=0, le=1_000_000, description="Bot guard: a user's events past this many in one event-time minute count for seen-filtering only (no interest, graph or trending change) and flag the user (`bot_suspected`); 0 = off", json_schema_extra=ADVANCED)
    bot_flag_minutes: int = Field(60, ge=1, le=1_000_000, description="Event-time minutes a user stays flagged as a suspected bot after their last event past the rate", json_schema_extra=ADVANCED)
    repeat_window_minutes: int = Field(60, ge=0, le=1_000_000, description="One user's repeated engagement with one item counts once per this many event-time minutes for the item graph and trending; 0 = every time", json_schema_extra=ADVANCED)
    global_graph: bool = Field(True, description="Rank every partition's users on one item graph and trending built from all partitions' events (over `<app_id>-graph-deltas`; docs/design/global-graph.md); false = each partition on its own graph", json_schema_extra=ADVANCED)
    graph_epoch_ms: int = Field(1_000, ge=1, le=86_400_000, description="Event time per epoch of the global graph", json_schema_extra=ADVANCED)
    graph_delay_epochs: int = Field(2, ge=0, le=1_000, description="Epochs of other partitions' events a list may lack: a list of an event at epoch e ranks on their events of the epochs before e - delay (plus its own partition's up to the event); a partition further behind holds the others' ranking back", json_schema_extra=ADVANCED)
    tick_interval_ms: int = Field(1_000, ge=10, le=3_600_000, description="An owned events partition idle this long, and behind the others by more than the delay, gets a tick record that moves its watermark on (so it cannot stall the global graph)", json_schema_extra=ADVANCED)
    hold_lists_until_caught_up: bool = Field(
        False,
        description="Publish no lists to `recommendations` until the app's group has committed the end offsets `events` had when the worker started, then log `caught up; safe to switch` (a rebuild beside a running app; `recstream rebuild` turns it on)",
        json_schema_extra=ADVANCED,
    )
    held_lists_topic: str = Field("", description="While lists are held: send them to this topic (full name, no prefix added, created compacted) instead of dropping them (`rebuild --output-topic` sets it)", json_schema_extra=ADVANCED)

    # -- encoder -------------------------------------------------------------
    model: str = Field("", description="Sentence-transformers model: a local directory or a name already in the Hugging Face cache (loaded offline); empty = packaged all-MiniLM-L6-v2")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Encoder device; auto picks CUDA when torch sees one, cuda is an error without a GPU")
    encode_batch_size: int = Field(0, ge=0, le=65_536, description="Texts per encoder batch; 0 = 64 on CPU, 256 on CUDA (fp16)", json_schema_extra=ADVANCED)

    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Worker log level; payloads and user text are never logged at info")
    event_loop: Literal["asyncio", "uvloop"] = Field("uvloop", description="The worker's event loop: uvloop (libuv; +18% worker events/s measured side by side, docs/design/performance.md) or asyncio's own", json_schema_extra=ADVANCED)

    # -- observability -------------------------------------------------------
    # Off by default: two workers on one host would clash on any fixed port.
    metrics_port: int = Field(0, ge=0, le=65_535, description="TCP port of the worker's /metrics, /healthz and /ready endpoints; 0 = off (each worker on a host needs its own)")
    metrics_host: str = Field("127.0.0.1", min_length=1, description="Address those endpoints listen on (0.0.0.0: every interface)")

    # -- serving API (streams.web.api), on the metrics port -----------------------
    api_enabled: bool = Field(True, description="Serve the lookup/rank API (/users/...) beside /metrics when metrics_port is set", json_schema_extra=ADVANCED)
    api_token: SecretStr = Field(SecretStr(""), description="Bearer token the API requires (Authorization: Bearer ...); empty = none, allowed only on a loopback metrics_host")
    api_advertised_url: str = Field("", description="URL other workers forward a user's requests to (this worker's API); empty = http(s)://<metrics_host or hostname>:<metrics_port>", json_schema_extra=ADVANCED)
    api_ssl_certfile: Path | None = Field(None, description="Server certificate (PEM): serve the API and metrics over HTTPS")
    api_ssl_keyfile: Path | None = Field(None, description="Private key (PEM) of api_ssl_certfile")
    api_max_body_bytes: int = Field(65_536, ge=1_024, le=16 * 2**20, description="Largest request body the API reads (413 above)", json_schema_extra=ADVANCED)
    api_max_items: int = Field(1_000, ge=1, le=100_000, description="Most candidates one rank request may send", json_schema_extra=ADVANCED)
    api_max_k: int = Field(1_000, ge=1, le=100_000, description="Largest k a request may ask for", json_schema_extra=ADVANCED)
    api_timeout_ms: int = Field(1_000, ge=10, le=60_000, description="Time limit of one API request, forwarding included (503 past it)", json_schema_extra=ADVANCED)
    api_list_cache_users: int = Field(50_000, ge=0, le=10_000_000, description="Latest lists kept in memory per worker for lookups (LRU); a user past it is ranked afresh on lookup", json_schema_extra=ADVANCED)

    @field_validator("broker")
    @classmethod
    def _normalise_broker(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("broker must not be empty")
        if "://" not in value:
            value = "kafka://" + value
        scheme = value.split("://", 1)[0]
        if scheme != "kafka":
            raise ValueError(f"broker URL scheme must be kafka://, got {scheme}://")
        for host_port in value.split("://", 1)[1].split(";"):
            host, _, port = host_port.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"broker address {host_port!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        protocol = self.security_protocol
        problems = []
        if protocol.startswith("SASL"):
            if not self.sasl_username:
                problems.append(f"security_protocol {protocol} needs sasl_username")
            if not self.sasl_password.get_secret_value():
                problems.append(f"security_protocol {protocol} needs sasl_password")
        elif self.sasl_username or self.sasl_password.get_secret_value():
            problems.append(f"SASL credentials are set but security_protocol is {protocol} (use SASL_PLAINTEXT or SASL_SSL)")
        tls_files = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile}
        given = [name for name, path in tls_files.items() if path is not None]
        if given and protocol not in ("SSL", "SASL_SSL"):
            problems.append(f"{', '.join(given)} set but security_protocol is {protocol} (use SSL or SASL_SSL)")
        for name in given:
            if not tls_files[name].is_file():
                problems.append(f"{name} {tls_files[name]} is not a file")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            problems.append("ssl_keyfile needs ssl_certfile")
        # the dashboard's JSON holds users' lists and interests whether or not
        # the /users API is on: off loopback, nothing about a user is served
        # without the token (/metrics, /healthz and /ready stay open)
        if self.metrics_port and not self.api_token.get_secret_value() and not is_loopback(self.metrics_host):
            problems.append(f"the HTTP endpoints listen on {self.metrics_host}, not a loopback address: set api_token "
                            "(the dashboard and the API serve user data; /metrics, /healthz and /ready stay open)")
        api_tls = {"api_ssl_certfile": self.api_ssl_certfile, "api_ssl_keyfile": self.api_ssl_keyfile}
        for name, path in api_tls.items():
            if path is not None and not path.is_file():
                problems.append(f"{name} {path} is not a file")
        if (self.api_ssl_certfile is None) != (self.api_ssl_keyfile is None):
            problems.append("api_ssl_certfile and api_ssl_keyfile go together")
        if self.api_advertised_url and not self.api_advertised_url.startswith(("http://", "https://")):
            problems.append("api_advertised_url must start with http:// or https://")
        if self.held_lists_topic and not self.hold_lists_until_caught_up:
            problems.append("held_lists_topic is set but hold_lists_until_caught_up is off (nothing would be held)")
        if self.held_lists_topic and self.held_lists_topic == self.topic("recommendations"):
            problems.append("held_lists_topic must not be the recommendations topic")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived -------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port]`` for plain Kafka clients."""
        return self.broker.split("://", 1)[1].replace(";", ",")

    def topic(self, name: str) -> str:
        """Full name of one of recstream's topics."""
        return f"{self.topic_prefix}{name}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: Any) -> Settings:
    """Environment first, then the given overrides (CLI flags; ``None`` = unset)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


def settings_env(settings: Settings) -> dict[str, str]:
    """``RECSTREAM_*`` variables that reproduce ``settings`` in a child process."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"RECSTREAM_{name.upper()}"] = str(value)
    return env


# -- the settings tables (README: what a user sets; docs/operations.md: advanced) --
TABLE_BEGIN = "<!-- settings table: generated by `python -m streams.settings --update`; do not edit -->"
TABLE_END = "<!-- end of settings table -->"
ADVANCED_TABLE_BEGIN = "<!-- advanced settings table: generated by `python -m streams.settings --update`; do not edit -->"
ADVANCED_TABLE_END = "<!-- end of advanced settings table -->"
TABLE_FILES = ("README.md", "docs/operations.md")


def is_advanced(name: str) -> bool:
    """Whether setting ``name`` is listed in the advanced table (its field is marked ``ADVANCED``)."""
    extra = Settings.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("advanced"))


def _default_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "none"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _values_text(annotation: Any, metadata: list[Any]) -> str:
    """What a field accepts: its choices, or its type and bounds."""
    if get_origin(annotation) is Literal:
        return ", ".join(f"`{choice}`" for choice in get_args(annotation))
    kinds = {bool: "`true`, `false`", int: "integer", float: "number", SecretStr: "text (secret)", Path: "path", str: "text"}
    kind = next((text for cls, text in kinds.items() if annotation is cls or cls in get_args(annotation)), "text")
    bounds = {name: f"{getattr(rule, name):,}" for rule in metadata for name in ("gt", "ge", "lt", "le", "min_length") if hasattr(rule, name)}
    if bounds.get("min_length") == "1":
        return f"non-empty {kind}"
    if "ge" in bounds and "le" in bounds:
        return f"{kind} {bounds['ge']}–{bounds['le']}"
    rules = [f"{sign} {bounds[name]}" for name, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")) if name in bounds]
    return f"{kind} {', '.join(rules)}" if rules else kind


def settings_table(advanced: bool = False) -> str:
    """The user settings (or, with ``advanced``, the advanced ones) as a
    Markdown table (environment variable, default, accepted values, meaning),
    from the fields of :class:`Settings`."""
    rows = ["| environment | default | values | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if is_advanced(name) != advanced:
            continue
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `RECSTREAM_{name.upper()}` | {_default_text(field.default)} | {_values_text(field.annotation, field.metadata)} | {meaning} |")
    return "\n".join(rows)


def replace_settings_table(text: str) -> str:
    """``text`` (the README or docs/operations.md) with the block between each
    pair of table markers it has regenerated (at least one pair)."""
    replaced = False
    for begin_marker, end_marker, advanced in ((TABLE_BEGIN, TABLE_END, False), (ADVANCED_TABLE_BEGIN, ADVANCED_TABLE_END, True)):
        begin, end = text.find(begin_marker), text.find(end_marker)
        if begin < 0 and end < 0:
            continue
        if begin < 0 or end < begin:
            raise ValueError(f"settings table markers out of order: {begin_marker}")
        text = text[: begin + len(begin_marker)] + "\n" + settings_table(advanced) + "\n" + text[end:]
        replaced = True
    if not replaced:
        raise ValueError("settings table markers not found")
    return text


def _main(argv: list[str]) -> int:
    """``python -m streams.settings [--advanced]`` prints a table; ``--update
    [FILE ...]`` rewrites the tables in the files (README.md and
    docs/operations.md by default)."""
    if argv[:1] == ["--update"]:
        for name in argv[1:] or TABLE_FILES:
            path = Path(name)
            path.write_text(replace_settings_table(path.read_text()))
        return 0
    if argv not in ([], ["--advanced"]):
        print("usage: python -m streams.settings [--advanced | --update [README.md docs/operations.md]]", file=sys.stderr)
        return 2
    print(settings_table(advanced=bool(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
