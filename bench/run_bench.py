"""`recstream bench`: run the selected sections, print a summary table, write
JSON and PNG charts.

Sections: ``encoder`` and ``retrieval`` need no broker; ``pipeline`` (no-op
and raw ceilings vs the real worker), ``state`` (bytes per user, RSS; measured
during the pipeline run), ``freshness`` and ``scale`` start an embedded broker
unless ``--broker`` is given.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.sysinfo import device_facts, machine_facts
from bench.workload import WorkloadSpec, generate
from streams.settings import Settings

SECTIONS = ("encoder", "retrieval", "pipeline", "state", "freshness", "scale", "serving")
console = Console()


@dataclass
class BenchOptions:
    sections: set[str]
    quick: bool = False
    output: Path | None = None
    users: int | None = None
    items: int | None = None
    events: int | None = None
    seed: int = 42
    retrieval_sizes: list[int] = field(default_factory=list)
    rates: list[int] = field(default_factory=lambda: [500, 1000, 2000])
    rate_duration_s: float | None = None
    broker: str | None = None
    int8: bool = True

    def spec(self) -> WorkloadSpec:
        # quick: small enough that the real worker (~400 events/s on 2 cores) needs ~10 s
        default = WorkloadSpec(users=500, items=200, events=4_000) if self.quick else WorkloadSpec(users=5_000, items=2_000, events=50_000)
        return WorkloadSpec(
            users=self.users or default.users,
            items=self.items or default.items,
            events=self.events or default.events,
            seed=self.seed,
        )

    def sizes(self) -> list[int]:
        if self.retrieval_sizes:
            return self.retrieval_sizes
        return [1_000, 10_000, 100_000] if self.quick else [1_000, 10_000, 100_000, 1_000_000]


def parse_sections(only: str | None, skip: str | None, quick: bool) -> set[str]:
    chosen = set(SECTIONS) if not only else {s.strip() for s in only.split(",") if s.strip()}
    unknown = chosen - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if skip:
        chosen -= {s.strip() for s in skip.split(",")}
    if quick and not only:
        chosen.discard("scale")  # two more worker start-ups and catalog encodes: minutes on 2 cores
    return chosen


def run_bench(settings: Settings, options: BenchOptions) -> dict[str, Any]:
    started = time.monotonic()
    spec = options.spec()
    log = lambda message: console.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {message}")  # noqa: E731
    result: dict[str, Any] = {
        "quick": options.quick,
        "sections": sorted(options.sections, key=SECTIONS.index),
        "device": device_facts(),
        "machine": machine_facts(),
        "workload": spec.__dict__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    workload = generate(spec)
    log(f"workload: {len(workload.items)} items, {len(workload.events):,} events, {len(workload.users)} active users (seed {spec.seed})")
    timings: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        t = time.monotonic()
        result.update(fn())
        timings[name] = round(time.monotonic() - t, 1)

    if "encoder" in options.sections:
        from bench.encoder_bench import run_encoder_bench

        timed("encoder", lambda: run_encoder_bench(workload, options.quick, log, int8=options.int8))
    if "retrieval" in options.sections:
        from bench.retrieval import run_retrieval_bench

        timed("retrieval", lambda: run_retrieval_bench(options.sizes(), seed=spec.seed, compare_at=10_000 if options.quick else 100_000, log=log))
    broker_sections = options.sections & {"pipeline", "state", "freshness", "scale"}
    if broker_sections:
        from bench.pipeline_bench import BrokerBenchConfig, run_broker_bench

        run_settings = settings.model_copy(update={"session_timeout_s": min(settings.session_timeout_s, 6.0)})
        if options.broker:
            # a broker of someone else's: fresh topic names so every run starts empty
            run_settings = run_settings.model_copy(update={"broker": options.broker, "topic_prefix": f"{settings.topic_prefix}bench-{int(time.time())}."})
        config = BrokerBenchConfig(
            sections=broker_sections,
            quick=options.quick,
            rates=options.rates,
            rate_duration_s=options.rate_duration_s or (4.0 if options.quick else 20.0),
            scale_events=min(len(workload.events), 20_000),
            work_dir=settings.data_dir / "bench",
        )
        timed("broker", lambda: run_broker_bench(run_settings, workload, config, run_settings.broker if options.broker else None, log))
    if "serving" in options.sections:
        from bench.serving_bench import run_serving

        serving_settings = settings.model_copy(update={"session_timeout_s": min(settings.session_timeout_s, 6.0)})
        if options.broker:
            serving_settings = serving_settings.model_copy(update={"broker": options.broker, "topic_prefix": f"{settings.topic_prefix}bench-serving-{int(time.time())}."})
        timed("serving", lambda: run_serving(
            serving_settings, workload, settings.data_dir / "bench-serving", options.broker,
            rate=options.rates[0] if options.rates else 500, duration_s=options.rate_duration_s or (5.0 if options.quick else 15.0), log=log,
        ))
    result["section_seconds"] = timings
    result["wall_s"] = round(time.monotonic() - started, 1)
    summary(result)
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(result, indent=2) + "\n")
        charts = plot(result, options.output)
        console.print(f"wrote {options.output}" + "".join(f", {c}" for c in charts))
    return result


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{unit}"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, metric, value) lines of the summary table."""
    rows: list[tuple[str, str, str]] = []
    for name in ("raw_eps", "noop_eps", "floor_eps", "pipeline_eps"):
        if name in result:
            rows.append(("pipeline", name.replace("_eps", " events/s"), _fmt(result[name])))
    for name, label in (("floor_ratio", "I/O floor / no-op"), ("ratio", "pipeline / no-op"), ("ratio_to_floor", "pipeline / I/O floor")):
        if name in result:
            rows.append(("pipeline", label, _fmt(result[name], "x")))
    for name, unit in (("bytes_per_user", " B"), ("bytes_per_user_all_tables", " B"), ("rss_mb_start", " MiB"), ("rss_mb_end", " MiB")):
        if name in result:
            rows.append(("state", name.replace("_", " "), _fmt(result[name], unit)))
    for rate, stats in result.get("freshness", {}).items():
        text = f"p50 {_fmt(stats.get('p50'))} / p95 {_fmt(stats.get('p95'))} / p99 {_fmt(stats.get('p99'))} ms, {stats['lists']} lists"
        rows.append(("freshness", f"{rate} events/s", text))
    for device, by_batch in result.get("encoder_texts_per_s", {}).items():
        rows.append(("encoder", f"{device} texts/s by batch", ", ".join(f"{b}: {_fmt(v)}" for b, v in by_batch.items())))
    if "encoder_cache_hit_rate" in result:
        rows.append(("encoder", "cache hit rate (replay)", f"{result['encoder_cache_hit_rate']:.0%}"))
    int8 = result.get("encoder_int8", {})
    if "speedup" in int8:
        rows.append(("encoder", "int8 dynamic (report only)", f"{int8['speedup']:.2f}x fp32, cosine {int8['cosine_mean']:.3f}"))
    for n, r in result.get("retrieval", {}).items():
        rows.append(("retrieval", f"n={int(n):,}", f"exact {_fmt(r['exact_ms'])} ms, ANN {_fmt(r['ann_ms'])} ms per {r['batch']} queries; recall@10 {r['recall_at_10']:.3f}; build {r['build_s']}s"))
    for workers, eps in result.get("scale", {}).items():
        rows.append(("scale", f"{workers} worker(s) events/s", _fmt(eps)))
    if "serving" in result:
        from bench.serving_bench import summary_rows as serving_rows

        rows.extend(serving_rows(result["serving"]))
    rows.append(("run", "device", f"{result['device']['type']} ({result['device']['name']})"))
    rows.append(("run", "wall time", f"{result['wall_s']} s"))
    return rows


def summary(result: dict[str, Any]) -> None:
    table = Table("section", "metric", "value", title="recstream bench" + (" (quick)" if result["quick"] else ""), title_justify="left")
    for row in summary_rows(result):
        table.add_row(*row)
    console.print(table)


def plot(result: dict[str, Any], output: Path) -> list[Path]:
    """One PNG per chart family beside the JSON; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig, suffix: str) -> None:
        path = output.with_name(f"{output.stem}-{suffix}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if any(k in result for k in ("raw_eps", "noop_eps", "floor_eps", "pipeline_eps", "scale")):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names, values = [], []
        for key, label in (("raw_eps", "raw aiokafka"), ("noop_eps", "no-op Faust"), ("floor_eps", "I/O-floor Faust"), ("pipeline_eps", "recstream worker")):
            if key in result:
                names.append(label)
                values.append(result[key])
        for workers, eps in result.get("scale", {}).items():
            names.append(f"{workers} worker(s), 4 partitions")
            values.append(eps)
        ax.barh(names, values, color="tab:blue")
        ax.set_xscale("log")
        ax.set_xlabel("events/s (log)")
        ax.set_title("throughput")
        save(fig, "throughput")
    if result.get("latency_ms"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        rates = list(result["latency_ms"])
        for q in ("p50", "p95", "p99"):
            ax.plot([int(r) for r in rates], [result["latency_ms"][r][q] for r in rates], marker="o", label=q)
        ax.axhline(100, color="grey", linestyle="--", linewidth=0.8, label="target p99 100 ms")
        ax.set_xlabel("produced events/s")
        ax.set_ylabel("event → list latency (ms)")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title("freshness")
        save(fig, "freshness")
    if result.get("encoder_texts_per_s"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for device, by_batch in result["encoder_texts_per_s"].items():
            ax.plot([int(b) for b in by_batch], list(by_batch.values()), marker="o", label=device)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("texts/s")
        ax.legend()
        ax.set_title("encoder (all-MiniLM-L6-v2)")
        save(fig, "encoder")
    if result.get("retrieval"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        sizes = [int(n) for n in result["retrieval"]]
        rows = list(result["retrieval"].values())
        left.plot(sizes, [r["exact_ms"] for r in rows], marker="o", label="exact (matmul + argpartition)")
        left.plot(sizes, [r["ann_ms"] for r in rows], marker="o", label="HNSW (faiss)")
        left.axhline(20, color="grey", linestyle="--", linewidth=0.8, label="20 ms batch window")
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("catalog size")
        left.set_ylabel(f"ms per {rows[0]['batch']} queries")
        left.legend(fontsize=7)
        right.plot(sizes, [r["recall_at_10"] for r in rows], marker="o")
        right.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
        right.set_xscale("log")
        right.set_ylim(0.8, 1.01)
        right.set_xlabel("catalog size")
        right.set_ylabel("recall@10 vs exact")
        fig.suptitle("retrieval")
        save(fig, "retrieval")
    return written
