"""Rewrite every linked figure of the README and docs/ from its results file.

A figure is a Markdown link to a JSON file in ``bench/results/`` whose
title is a key path, e.g. ``[945](bench/results/bench.json "pipeline_eps")``
(the format ``tests/test_readme_numbers.py`` checks). After a new run of
the harness, this puts the file's values in the text, keeping each
figure's decimals, multiplier (`` M``, `` k``) and unit::

    python -m bench.refresh_figures            # README.md and docs/**/*.md
    python -m bench.refresh_figures --check    # list what would change, exit 1 if anything

Only the numbers change; which rows the tables have, and what the prose
says about them ("met?", "falls behind"), is still the writer's to check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LINK = re.compile(r'\[([^\]]*)\]\(([^)\s]+\.json)\s+"([^"]*)"\)')
SHOWN = re.compile(r"^(\**)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(\s*[Mk](?![A-Za-z]))?(\s*[^\d\s*][^*]*?)?(\**)$")
TITLE = re.compile(r"(.+?)(?:\s+([*/])\s*(\d+(?:\.\d+)?))?")


def _value(data: object, path: str) -> object:
    for quoted, plain in re.findall(r"'([^']*)'|([^.]+)", path):
        key = quoted or plain
        data = data[int(key)] if isinstance(data, list) else data[key]  # type: ignore[index]
    return data


def refreshed(text: str, shown: str, target: Path, title: str) -> str | None:
    """The figure ``shown`` with the file's value, or None when it is not a
    figure (not a number, or the key is not a number in the file)."""
    match, title_match = SHOWN.match(shown.strip()), TITLE.fullmatch(title.strip())
    if not match or not title_match or not target.is_file():
        return None
    lead, whole, fraction, multiplier, unit, trail = match.groups()
    path, op, factor = title_match.groups()
    try:
        value = _value(json.loads(target.read_text()), path)
    except (KeyError, IndexError, ValueError, TypeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = Decimal(str(value))
    if op:
        number = number * Decimal(factor) if op == "*" else number / Decimal(factor)
    number /= {"M": Decimal(1_000_000), "k": Decimal(1_000)}.get((multiplier or "").strip(), Decimal(1))
    decimals = len(fraction) - 1 if fraction else 0
    rounded = number.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)
    digits = f"{rounded:,.{decimals}f}" if "," in whole or abs(rounded) >= 10_000 else f"{rounded:.{decimals}f}"
    return f"{lead}{digits}{multiplier or ''}{unit or ''}{trail}"


def refresh(page: Path) -> tuple[str, list[tuple[str, str]]]:
    """``page``'s text with its figures refreshed, and the (old, new) pairs."""
    changes: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        shown, target, title = match.groups()
        path = (page.parent / target).resolve()
        if path.parent != RESULTS.resolve():
            return match.group(0)
        new = refreshed(match.group(0), shown, path, title)
        if new is None or new == shown:
            return match.group(0)
        changes.append((shown, new))
        return f"[{new}]({target} \"{title}\")"

    return LINK.sub(replace, page.read_text()), changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the figures that differ from their files")
    args = parser.parse_args(argv)
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    changed = False
    for page in pages:
        text, changes = refresh(page)
        for old, new in changes:
            print(f"{page.relative_to(ROOT)}: {old} -> {new}")
        if changes:
            changed = True
            if not args.check:
                page.write_text(text)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
