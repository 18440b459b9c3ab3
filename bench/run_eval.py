"""`recstream eval movielens`: run, print a markdown table, write JSON + PNG."""

from __future__ import annotations

import json
from pathlib import Path

from bench.evaluation import markdown_table, plot, run_offline
from streams.ops.loading import movielens_path
from streams.ops.movielens import read_movielens
from streams.settings import Settings


def run_eval(settings: Settings, mode: str, path: Path | None, output: Path | None) -> dict:
    movielens = read_movielens(movielens_path(settings, path))
    if mode == "offline":
        from models.encoder import TextEncoder

        encoder = TextEncoder(settings.model or None, settings.device, settings.encode_batch_size)
        from streams.app import epoch_params

        result = run_offline(movielens, encoder, partitions=settings.partitions, epochs=epoch_params(settings))
    else:
        from bench.pipeline_eval import run_pipeline

        result = run_pipeline(movielens, settings, settings.data_dir / "eval")
    print(markdown_table(result))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, output.with_suffix(".png"))
        print(f"wrote {output} and {output.with_suffix('.png')}")
    return result
