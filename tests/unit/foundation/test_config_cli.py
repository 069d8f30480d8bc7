"""Configuration layering, one-line config errors, and the CLI's lazy imports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spanscribe.cli import COMMANDS, build_parser, main
from spanscribe.config import ConfigError, kafka_config, load


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("bootstrap_servers: file:1\ntopic_prefix: fromfile\npartitions: 6\n"
                   "kafka:\n  security.protocol: SSL\nstt:\n  urls: [ws://a:1]\n")
    s = load(str(cfg), environ={})
    assert (s["bootstrap_servers"], s["topic_prefix"], s["partitions"]) == ("file:1", "fromfile", 6)
    s = load(str(cfg), environ={"SPANSCRIBE_BOOTSTRAP_SERVERS": "env:2", "SPANSCRIBE_KAFKA_SASL_MECHANISM": "PLAIN",
                                "SPANSCRIBE_STT__URLS": "ws://b:2,ws://c:3"})
    assert s["bootstrap_servers"] == "env:2" and s["topic_prefix"] == "fromfile"
    assert s["kafka"] == {"security.protocol": "SSL", "sasl.mechanism": "PLAIN"}
    assert s["stt"]["urls"] == ["ws://b:2", "ws://c:3"]
    s = load(str(cfg), environ={"SPANSCRIBE_BOOTSTRAP_SERVERS": "env:2"}, overrides={"bootstrap_servers": "flag:3"})
    assert s["bootstrap_servers"] == "flag:3"
    assert kafka_config(s)["bootstrap.servers"] == "flag:3"


def test_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('topic_prefix = "t1"\n[speakers]\nagent_networks = ["10.1.0.0/16"]\n')
    s = load(str(cfg), environ={})
    assert s["topic_prefix"] == "t1" and s["speakers"]["agent_networks"] == ["10.1.0.0/16"]


@pytest.mark.parametrize("env,needle", [
    ({"SPANSCRIBE_PARTITIONS": "zero"}, "partitions"),
    ({"SPANSCRIBE_PARTITIONS": "-1"}, "partitions"),
    ({"SPANSCRIBE_BOOTSTRAP_SERVERS": "nohostport"}, "bootstrap_servers"),
    ({"SPANSCRIBE_STT__URLS": "http://x:1"}, "stt.urls"),
    ({"SPANSCRIBE_STT__PROTOCOL": "grpc"}, "stt.protocol"),
    ({"SPANSCRIBE_SPEAKERS__AGENT_NETWORKS": "10.0.0.0/33"}, "agent_networks"),
    ({"SPANSCRIBE_TOPIC_PREFIX": "bad prefix"}, "topic_prefix"),
])
def test_bad_values_give_one_line_naming_the_key(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(environ=env)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("partitions: [1, 2\n")
    assert main(["topics", "list", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad configuration" in err and "c.yaml" in err and "\n" not in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_help_works_without_services(command: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "spanscribe", command, "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: spanscribe " + command in proc.stdout
    assert len(proc.stdout.splitlines()) > 5


def test_top_level_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return set(out.split())


def test_edge_and_cli_never_import_faust() -> None:
    mods = _imported_after("import spanscribe.cli, spanscribe.config, schemas.codec\n"
                           "try:\n import edge_capture.app\nexcept ModuleNotFoundError: pass")
    assert not {m for m in mods if m.split(".")[0] in ("faust", "mode", "aiokafka", "streams")}


def test_pure_packages_import_no_io() -> None:
    code = ("import importlib, pkgutil\n"
            "for pkg in ('spanscribe.protocols', 'streams.core'):\n"
            "    try:\n        m = importlib.import_module(pkg)\n    except ModuleNotFoundError:\n        continue\n"
            "    for info in pkgutil.walk_packages(m.__path__, pkg + '.'):\n"
            "        importlib.import_module(info.name)\n")
    mods = _imported_after(code)
    banned = {"faust", "mode", "aiokafka", "confluent_kafka", "websockets", "asyncio", "socket", "edge_capture"}
    assert not {m.split(".")[0] for m in mods} & banned


def test_worker_nat_fallback_default_file_env_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spanscribe.cli import _settings

    assert load(environ={})["worker"]["nat_fallback"] is True
    cfg = tmp_path / "c.yaml"
    cfg.write_text("worker:\n  nat_fallback: false\n")
    assert load(str(cfg), environ={})["worker"]["nat_fallback"] is False
    assert load(str(cfg), environ={"SPANSCRIBE_WORKER__NAT_FALLBACK": "true"})["worker"]["nat_fallback"] is True
    with pytest.raises(ConfigError, match="worker.nat_fallback"):
        load(environ={"SPANSCRIBE_WORKER__NAT_FALLBACK": "maybe"})
    monkeypatch.delenv("SPANSCRIBE_CONFIG", raising=False)
    monkeypatch.setenv("SPANSCRIBE_WORKER__NAT_FALLBACK", "true")
    for argv, want in ((["worker"], True), (["worker", "--no-nat-fallback"], False),
                       (["worker", "--nat-fallback"], True)):
        assert _settings(build_parser().parse_args(argv))["worker"]["nat_fallback"] is want, argv
    monkeypatch.setenv("SPANSCRIBE_WORKER__NAT_FALLBACK", "false")
    assert _settings(build_parser().parse_args(["worker"]))["worker"]["nat_fallback"] is False
    help_text = build_parser()._subparsers._group_actions[0].choices["worker"].format_help()  # type: ignore[union-attr]
    assert "--no-nat-fallback" in help_text and "rtp-by-source" in help_text


def test_topic_specs_have_rtp_by_source_co_partitioned() -> None:
    from spanscribe.topics import topic_specs

    specs = {s.name: s for s in topic_specs(load(environ={}, overrides={"partitions": 6}))}
    assert specs["spanscribe.rtp-by-source"].partitions == specs["spanscribe.rtp"].partitions == 6
    assert specs["spanscribe.rtp-by-source"].config["cleanup.policy"] == "delete"
