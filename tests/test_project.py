"""Project-level checks: import contracts, compose file, README and docs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streams.settings import ADVANCED_TABLE_BEGIN, ADVANCED_TABLE_END, TABLE_BEGIN, TABLE_END, Settings, settings_table
from streams.kafka.topics import topic_specs

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    # models/ and schemas/ never import faust/aiokafka; arrows point one way.
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and "0 broken" in result.stdout


def compose_topics() -> dict[str, tuple[int, dict[str, str]]]:
    compose = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    script = compose["services"]["create-topics"]["command"][0]
    found = {}
    for name, partitions, configs in re.findall(r'"([\w.-]+):(\d+):([^"]*)"', script):
        config = dict(pair.split("=", 1) for pair in configs.split(",") if pair)
        found[name] = (int(partitions), config)
    return found


def test_compose_creates_the_topics_the_worker_expects():
    expected = {s.name: (s.partitions, s.config) for s in topic_specs(Settings())}
    assert compose_topics() == expected


def test_compose_runs_kafka_in_kraft_mode_without_auto_create():
    compose = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"


def test_readme_documents_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def table_block(path: Path, begin: str, end: str) -> str:
    text = path.read_text()
    assert text.count(begin) == 1 and text.count(end) == 1, f"{path.name}: one pair of table markers"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_settings_tables_are_the_generated_ones_and_list_every_setting_once():
    # the tables are generated from the settings' field descriptions (fields
    # marked ADVANCED go to docs/operations.md); after changing a setting run
    # `python -m streams.settings --update`
    readme = table_block(ROOT / "README.md", TABLE_BEGIN, TABLE_END)
    advanced = table_block(ROOT / "docs" / "operations.md", ADVANCED_TABLE_BEGIN, ADVANCED_TABLE_END)
    assert readme == settings_table(), "README settings table is stale: run python -m streams.settings --update"
    assert advanced == settings_table(advanced=True), "docs/operations.md advanced settings table is stale: run python -m streams.settings --update"
    listed = [row.split("`")[1] for block in (readme, advanced) for row in block.splitlines()[2:]]
    assert sorted(listed) == sorted(f"RECSTREAM_{name.upper()}" for name in Settings.model_fields), "every setting in exactly one table"
    # the README lists what a user sets; the internal knobs are advanced
    assert len(readme.splitlines()) - 2 <= 25
    assert "](docs/operations.md#advanced-settings)" in (ROOT / "README.md").read_text()
    assert all(Settings.model_fields[name].description for name in Settings.model_fields)


def test_settings_update_rewrites_both_tables(tmp_path, monkeypatch):
    from streams.settings import _main

    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"intro\n{TABLE_BEGIN}\nold\n{TABLE_END}\nrest\n")
    (tmp_path / "docs" / "operations.md").write_text(f"## Advanced settings\n{ADVANCED_TABLE_BEGIN}\nold\n{ADVANCED_TABLE_END}\n")
    monkeypatch.chdir(tmp_path)
    assert _main(["--update"]) == 0
    assert (tmp_path / "README.md").read_text() == f"intro\n{TABLE_BEGIN}\n{settings_table()}\n{TABLE_END}\nrest\n"
    assert settings_table(advanced=True) in (tmp_path / "docs" / "operations.md").read_text()
    (tmp_path / "other.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="markers not found"):
        _main(["--update", "other.md"])


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings."""
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in re.findall(r"^#+ (.+)$", markdown, re.M)}


def test_readme_is_for_users_and_links_its_deep_dives():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) < 40_000
    # docs/ is user documentation; design notes and history are in docs/design/
    for page in ("architecture", "operations", "serving", "design/exactly-once", "design/faust-fixes", "design/global-graph", "design/performance", "design/reproducibility"):
        assert f"](docs/{page}.md" in readme
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = page.read_text()
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", text):
            linked = (page.parent / target) if target else page
            assert linked.is_file(), f"{page.name} links to missing {target}"
            assert not anchor or anchor in anchors(linked.read_text()), f"{page.name} links to missing {target}#{anchor}"
