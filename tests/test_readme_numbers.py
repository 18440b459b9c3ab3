"""The README's figures come from results files, and equal them.

Every figure in the README's ``## Performance`` section, through the end of
its ``### Quality`` subsection, names the file in ``bench/results/`` it was
read from (written by the command the row or the paragraph above the table
gives), and this test reads that file.

A figure is a Markdown link to the JSON file whose title is a key path::

    [240](bench/results/bench.json "pipeline_eps")
    [21 s](bench/results/bench.json "freshness.500.p50 /1000")

- The key path is dot-separated: dict keys as written, list indices as
  numbers. A key that itself contains a dot goes in single quotes
  (``rocksdb_bytes.'v1/tables/user-state-0.db'``).
- An optional scale after a space, ``/N`` or ``*N``, divides or multiplies
  the file's value before the comparison (milliseconds shown as seconds, a
  fraction shown as a percentage).
- The link text is one number: ``,`` thousands separators, an optional
  `` M`` or `` k`` multiplier (1.67 M = 1,670,000), then an optional unit
  (``×``, ``x``, ``%``, ``ms``, ``s``, ``B``, ``MiB``, ...) that is not
  checked. Emphasis around or inside the link is allowed.
- The number shown equals the file's value rounded to the decimals shown:
  it is at most half a unit of its last digit away (so 240 stands for 240.5
  either way of rounding a half).

A table may instead name one file per row in a column headed ``file``: a
link to the file, its title (optional) a key prefix. A measured cell of that
row that holds a plain number, with no link of its own, is the value at the
prefix plus the cell's column header in lower case (``HR@10`` -> ``hr@10``).

In every table of the section each digit of a measured cell is inside such a
link (or is such a plain number in a row with a file). Not measured, so not
checked: the first column (what is measured), columns whose header is
``target``, ``met?`` or ``file``, and rows whose first cell is ``target``.

Every link to a results file whose text is a number and whose title is a
key path, anywhere in the README or in ``docs/`` (paragraphs included), is
checked the same way; any other link to a results file must name an existing
file (and key prefix).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

LINK = re.compile(r'\[([^\]]*)\]\(([^)\s]+)(?:\s+"([^"]*)")?\)')
NUMBER = re.compile(r"^(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:\s*([Mk])(?![A-Za-z]))?\s*([^\d\s].*)?$")
UNITS = {"", "×", "x", "%", "ms", "s", "B", "KB", "KiB", "MB", "MiB", "GiB", "GB", "events/s", "edge updates/s", "req/s"}
EXEMPT_HEADERS = {"target", "met?", "file"}


def performance_section(readme: str) -> str:
    """``## Performance`` through the end of its subsections (the next ``## ``)."""
    match = re.search(r"^## Performance\n(.*?)(?=^## )", readme, re.M | re.S)
    assert match, "README has a ## Performance section followed by another ## section"
    section = match.group(1)
    assert re.search(r"^### Quality", section, re.M), "the Quality subsection is inside ## Performance"
    return section


def tables(markdown: str) -> list[list[list[str]]]:
    """Each table as rows of cells (header first, the --- line dropped)."""
    found, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(split_row(line))
        elif current:
            found.append([row for row in current if not all(re.fullmatch(r":?-+:?", cell) for cell in row)])
            current = []
    return found


def split_row(line: str) -> list[str]:
    # a | inside a link title or text would break this; the README has none
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def key_path(path: str) -> list[str]:
    parts = re.findall(r"'([^']*)'|([^.]+)", path)
    return [quoted or plain for quoted, plain in parts]


def resolve(data, path: str):
    value = data
    for key in key_path(path):
        if isinstance(value, list):
            assert key.isdigit() and int(key) < len(value), f"no index {key!r} in a list of {len(value)}"
            value = value[int(key)]
        else:
            assert isinstance(value, dict) and key in value, f"no key {key!r} (path {path!r})"
            value = value[key]
    return value


def parse_title(title: str) -> tuple[str, Decimal]:
    match = re.fullmatch(r"(.+?)(?:\s+([*/])\s*(\d+(?:\.\d+)?))?", title.strip())
    assert match, f"bad key path {title!r}"
    path, op, factor = match.groups()
    scale = Decimal(1) if not op else (Decimal(factor) if op == "*" else 1 / Decimal(factor))
    return path, scale


def parse_shown(text: str) -> tuple[Decimal, Decimal]:
    """The number a figure shows and half a unit of its last digit."""
    text = text.replace("*", "").strip()
    match = NUMBER.match(text)
    assert match, f"figure {text!r} is not a number with an optional unit"
    whole, fraction, multiplier, unit = match.groups()
    assert (unit or "").strip() in UNITS, f"figure {text!r}: unknown unit {unit!r}"
    shown = Decimal(whole.replace(",", "") + (fraction or ""))
    half = Decimal("0.5").scaleb(-(len(fraction) - 1) if fraction else 0)
    factor = {"M": Decimal(1_000_000), "k": Decimal(1_000), None: Decimal(1)}[multiplier]
    return shown * factor, half * factor


def results_file(page: Path, target: str, results: Path = RESULTS) -> Path | None:
    """The results JSON a link points to, or None for any other link."""
    path = (page.parent / target.split("#")[0]).resolve()
    return path if path.suffix == ".json" and path.parent == results.resolve() else None


def check_figure(page: Path, shown_text: str, target: str, title: str, results: Path = RESULTS) -> None:
    where = f"{page.name}: [{shown_text}]({target} {title!r})"
    path = results_file(page, target, results)
    assert path is not None, f"{where}: not a file in bench/results/"
    assert path.is_file(), f"{where}: {path.name} does not exist"
    key, scale = parse_title(title)
    try:
        value = resolve(json.loads(path.read_text()), key)
    except AssertionError as error:
        raise AssertionError(f"{where}: {error}") from None
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {key} is {value!r}, not a number"
    shown, half = parse_shown(shown_text)
    expected = Decimal(repr(value)) * scale
    assert abs(shown - expected) <= half * (1 + Decimal("1e-9")), f"{where}: the file says {expected.normalize()}"


def measured_columns(header: list[str]) -> list[int]:
    return [i for i, name in enumerate(header) if i > 0 and name.strip("* ").lower() not in EXEMPT_HEADERS]


def check_table(page: Path, table: list[list[str]]) -> int:
    """Check one table's measured cells; return how many figures it holds."""
    header, rows = table[0], table[1:]
    file_column = next((i for i, name in enumerate(header) if name.strip().lower() == "file"), None)
    figures = 0
    for row in rows:
        assert len(row) == len(header), f"row {row[0]!r} has {len(row)} cells, the header {len(header)}"
        if row[0].strip("* ").lower() == "target":
            continue
        row_file = LINK.search(row[file_column]) if file_column is not None else None
        for i in measured_columns(header):
            cell = row[i]
            links = [link for link in LINK.finditer(cell) if results_file(page, link.group(2))]
            for link in links:
                assert link.group(3), f"{row[0]!r}, {header[i]!r}: link {link.group(0)!r} has no key path as its title"
                check_figure(page, link.group(1), link.group(2), link.group(3))
            rest = LINK.sub("", cell)
            plain = rest.replace("*", "").strip()
            if row_file and not links and plain and re.search(r"\d", plain):
                prefix = (row_file.group(3) or "").strip()
                key = ".".join(part for part in (prefix, header[i].strip("* ").lower()) if part)
                check_figure(page, plain, row_file.group(2), key)
                figures += 1
                continue
            assert not re.search(r"\d", rest), f"{row[0]!r}, {header[i]!r}: {cell!r} has digits outside a link to a results file"
            figures += len(links)
    return figures


def test_every_performance_and_quality_figure_is_read_from_its_results_file():
    page = ROOT / "README.md"
    section = performance_section(page.read_text())
    found = tables(section)
    assert len(found) >= 2, "the Performance and the Quality tables"
    figures = sum(check_table(page, table) for table in found)
    assert figures >= 30, f"only {figures} figures found: is the parser reading the tables?"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_linked_figure_in_readme_and_docs_equals_its_file(page):
    for link in LINK.finditer(page.read_text()):
        shown, target, title = link.groups()
        path = results_file(page, target)
        if path is None:
            continue
        assert path.is_file(), f"{page.name} links to missing {target}"
        if title and NUMBER.match(shown.replace("*", "").strip()):
            check_figure(page, shown, target, title)
        elif title:  # a table's file column: the title is a key prefix
            resolve(json.loads(path.read_text()), parse_title(title)[0])


@pytest.mark.parametrize(
    ("text", "title", "value", "ok"),
    [
        ("240", "x", 240.5, True),
        ("241", "x", 240.5, True),
        ("239", "x", 240.5, False),
        ("**0.051×**", "x", 0.051, True),
        ("1,402 MiB", "x", 1402.5, True),
        ("1.67 M", "x", 1_671_000, True),
        ("1.67 M", "x", 1_680_000, False),
        ("21 s", "x /1000", 20954.8, True),
        ("100%", "x *100", 1.0, True),
        ("0.2057", "x", 0.20574, True),
        ("0.2057", "x", 0.2059, False),
        ("8,157 B", "x", 8156.7, True),
    ],
)
def test_a_figure_is_its_value_rounded_to_the_decimals_shown(tmp_path, text, title, value, ok):
    (tmp_path / "r.json").write_text(json.dumps({"x": value}))
    page = tmp_path / "README.md"
    if ok:
        check_figure(page, text, "r.json", title, results=tmp_path)
    else:
        with pytest.raises(AssertionError):
            check_figure(page, text, "r.json", title, results=tmp_path)


def test_key_paths_take_list_indices_and_quoted_keys():
    data = {"a": [{"b.c": {"d": 1}}]}
    assert resolve(data, "a.0.'b.c'.d") == 1
    with pytest.raises(AssertionError):
        resolve(data, "a.1")
