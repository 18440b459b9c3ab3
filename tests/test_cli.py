"""The ``recstream`` command line's shape: connection settings once at the
group level, each command's own flags in its ``--help``, every setting from
``RECSTREAM_*`` variables, and the commands other packages register."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from streams.cli import CONNECTION, main, with_settings
from streams.settings import Settings


@pytest.fixture
def probe():
    """A command of `main` that prints the settings it was given."""

    @main.command("probe-settings")
    @with_settings("app_id", "batch_size")
    def probe_settings(settings: Settings) -> None:
        click.echo(f"{settings.broker} {settings.topic_prefix} {settings.app_id} {settings.batch_size} {settings.top_k}")

    yield
    main.commands.pop("probe-settings")


def commands(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from commands(command, click.Context(command, parent=ctx, info_name=name), (*prefix, name))
        else:
            yield (*prefix, name)


def test_environment_then_group_flags_then_command_flags(probe):
    env = {"RECSTREAM_BROKER": "kafka://env:1", "RECSTREAM_APP_ID": "from-env", "RECSTREAM_BATCH_SIZE": "7", "RECSTREAM_TOP_K": "3"}
    runner = CliRunner()
    result = runner.invoke(main, ["probe-settings"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["kafka://env:1", "from-env", "7", "3"]
    result = runner.invoke(main, ["--broker", "flag:2", "--topic-prefix", "s.", "probe-settings", "--app-id", "from-flag"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["kafka://flag:2", "s.", "from-flag", "7", "3"]


def test_invalid_settings_are_a_usage_error(probe):
    result = CliRunner().invoke(main, ["--sasl-username", "alice", "probe-settings"])
    assert result.exit_code == 2
    assert "invalid settings" in result.output and "SASL credentials are set" in result.output


def test_connection_flags_only_at_the_group_level():
    runner = CliRunner()
    group_help = runner.invoke(main, ["--help"]).output
    for name in CONNECTION:
        assert "--" + name.replace("_", "-") in group_help
    ctx = click.Context(main, info_name="recstream")
    found = list(commands(main, ctx))
    assert ("topics", "create") in found and ("eval", "movielens") in found and ("bench",) in found
    for path in found:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        options = result.output.split("Options:", 1)[1]
        for flag in ("--broker", "--sasl-username", "--sasl-password", "--ssl-cafile", "--security-protocol", "--topic-prefix"):
            assert flag not in options, (path, flag)


def test_each_command_shows_its_own_settings():
    runner = CliRunner()
    topics_create = runner.invoke(main, ["topics", "create", "--help"]).output
    assert "--partitions" in topics_create and "--batch-size" not in topics_create and "--model" not in topics_create
    worker = runner.invoke(main, ["worker", "--help"]).output
    assert "--batch-size" in worker and "--metrics-port" in worker and "--data-dir" in worker
    tail = runner.invoke(main, ["tail", "--help"]).output
    assert "--user" in tail and "--app-id" not in tail
    rebuild = runner.invoke(main, ["rebuild", "--help"]).output
    assert "--app-id" in rebuild and "--output-topic" in rebuild and "--hold-lists-until-caught-up" not in rebuild


def test_every_setting_has_a_flag_somewhere_or_is_set_by_environment():
    # a worker reads every setting: the group's flags and the worker's cover them all
    runner = CliRunner()
    shown = runner.invoke(main, ["--help"]).output + runner.invoke(main, ["worker", "--help"]).output
    missing = [name for name in Settings.model_fields if "--" + name.replace("_", "-") not in shown]
    assert not missing
