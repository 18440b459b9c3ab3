"""Project-level checks: import contracts, compose file, README and docs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from streams.settings import TABLE_BEGIN, TABLE_END, Settings, settings_table
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


def test_readme_documents_every_setting_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    missing = [f"RECSTREAM_{name.upper()}" for name in Settings.model_fields if f"RECSTREAM_{name.upper()}" not in readme]
    assert not missing, f"README lacks settings: {missing}"
    assert "make demo" in readme and "make test" in readme


def test_readme_settings_table_is_the_generated_one():
    # the table is generated from the settings' field descriptions; after
    # changing a setting run `python -m streams.settings --update README.md`
    readme = (ROOT / "README.md").read_text()
    assert readme.count(TABLE_BEGIN) == 1 and readme.count(TABLE_END) == 1
    block = readme.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    assert block == settings_table(), "README settings table is stale: run python -m streams.settings --update README.md"
    rows = [line for line in block.splitlines()[2:]]
    assert [row.split("`")[1] for row in rows] == [f"RECSTREAM_{name.upper()}" for name in Settings.model_fields]
    assert all(Settings.model_fields[name].description for name in Settings.model_fields)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings."""
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in re.findall(r"^#+ (.+)$", markdown, re.M)}


def test_readme_is_for_users_and_links_its_deep_dives():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) < 40_000
    for page in ("architecture", "exactly-once", "faust-fixes", "performance", "operations", "reproducibility", "serving"):
        assert f"](docs/{page}.md" in readme
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        text = page.read_text()
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", text):
            linked = (page.parent / target) if target else page
            assert linked.is_file(), f"{page.name} links to missing {target}"
            assert not anchor or anchor in anchors(linked.read_text()), f"{page.name} links to missing {target}#{anchor}"
