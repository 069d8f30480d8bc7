"""Configuration: defaults < config file (TOML or YAML) < ``SPANSCRIBE_*`` environment < command-line flags.

The settings are one nested dict. Top-level scalar keys map to env ``SPANSCRIBE_<KEY>`` (upper-case);
librdkafka properties live under ``kafka:`` and map to ``SPANSCRIBE_KAFKA_<PROPERTY>`` with dots written
as underscores (``SPANSCRIBE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` -> ``security.protocol``); nested sections
(``stt``, ``speakers``, ``topics``) map to ``SPANSCRIBE_<SECTION>__<KEY>`` (double underscore).
A bad value is reported in one line naming the key and where it came from (:class:`ConfigError`).
"""
from __future__ import annotations

import copy
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "bootstrap_servers": "127.0.0.1:9092",
    "topic_prefix": "spanscribe",
    "schema_registry_url": None,
    "site": None,
    "partitions": 4,
    "replication_factor": 1,
    "kafka": {},
    "stt": {"urls": ["ws://127.0.0.1:2700"], "protocol": "vosk", "max_sessions": 16, "sample_rate": 16000},
    "speakers": {"agent_networks": [], "agent_extensions": [], "caller_role": None},
    "worker": {"web_port": 6066, "data_dir": None, "store": "auto", "pending_s": 120.0, "pending_mb": 64, "idle_s": 30.0,
               "fetch_max_wait_ms": 100, "producer_linger_ms": 5, "nat_fallback": True, "ack_hold_s": 30.0,
               "ack_hold_wall_s": 10.0, "ack_hold_records": 4096},
}

# Top-level keys whose type we check and convert from env strings.
_INT_KEYS = {"partitions", "replication_factor"}


class ConfigError(ValueError):
    """A configuration value is wrong; ``str()`` is one line naming key, value and source."""


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file into a dict."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {p}: cannot read: {exc.strerror or exc}") from None
    try:
        if p.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode())
        else:
            import yaml

            data = yaml.safe_load(raw) or {}
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {p}: not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: top level must be a mapping, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _env_value(raw: str) -> Any:
    """Env strings: lists are comma-separated; ints and booleans are converted where unambiguous."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    return raw


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``SPANSCRIBE_*`` variables as a nested settings dict."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("SPANSCRIBE_") or name in ("SPANSCRIBE_CACHE", "SPANSCRIBE_CAPTURES"):
            continue
        rest = name[len("SPANSCRIBE_"):]
        if rest.startswith("KAFKA_"):
            out.setdefault("kafka", {})[rest[len("KAFKA_"):].lower().replace("_", ".")] = raw
        elif "__" in rest:
            section, key = rest.lower().split("__", 1)
            val: Any = _env_value(raw)
            if key in ("urls", "agent_networks", "agent_extensions"):
                val = [s.strip() for s in raw.split(",") if s.strip()]
            out.setdefault(section, {})[key] = val
        else:
            out[rest.lower()] = _env_value(raw)
    return out


def validate(settings: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise types. Raises ConfigError (one line) on the first bad value."""
    for key in _INT_KEYS:
        v = settings.get(key)
        try:
            iv = int(v)  # type: ignore[arg-type]  # None is caught below
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a positive integer, got {v!r}") from None
        if iv <= 0:
            raise ConfigError(f"{key}: expected a positive integer, got {v!r}")
        settings[key] = iv
    bs = settings.get("bootstrap_servers")
    if not isinstance(bs, str) or not bs or not all(re.fullmatch(r"[^\s:,]+:\d{1,5}", h.strip()) for h in bs.split(",")):
        raise ConfigError(f"bootstrap_servers: expected host:port[,host:port...], got {bs!r}")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", str(settings.get("topic_prefix", ""))):
        raise ConfigError(f"topic_prefix: only letters, digits, '.', '_' and '-' are allowed, got {settings.get('topic_prefix')!r}")
    stt = settings.setdefault("stt", {})
    urls = stt.get("urls")
    if isinstance(urls, str):
        urls = [u.strip() for u in urls.split(",") if u.strip()]
    if not isinstance(urls, list) or not all(isinstance(u, str) and re.match(r"wss?://", u) for u in urls):
        raise ConfigError(f"stt.urls: expected a list of ws:// or wss:// URLs, got {urls!r}")
    stt["urls"] = urls
    try:
        stt["max_sessions"] = int(stt.get("max_sessions", 16))
        if stt["max_sessions"] <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"stt.max_sessions: expected a positive integer, got {stt.get('max_sessions')!r}") from None
    if stt.get("protocol") not in ("vosk", "whisperlive"):
        raise ConfigError(f"stt.protocol: expected 'vosk' or 'whisperlive', got {stt.get('protocol')!r}")
    sp = settings.setdefault("speakers", {})
    for net in sp.get("agent_networks") or []:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"speakers.agent_networks: {net!r} is not an IP network (e.g. 10.1.0.0/16)") from None
    for pat in sp.get("agent_extensions") or []:
        try:
            re.compile(pat)
        except re.error as exc:
            raise ConfigError(f"speakers.agent_extensions: {pat!r} is not a valid regular expression: {exc}") from None
    worker = settings.setdefault("worker", {})
    nat = worker.get("nat_fallback", True)
    if isinstance(nat, str) and nat.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        nat = nat.strip().lower() in ("true", "yes", "on", "1")
    elif isinstance(nat, int) and not isinstance(nat, bool) and nat in (0, 1):
        nat = bool(nat)
    if not isinstance(nat, bool):
        raise ConfigError(f"worker.nat_fallback: expected true or false, got {worker.get('nat_fallback')!r}")
    worker["nat_fallback"] = nat
    kafka = settings.get("kafka") or {}
    if not isinstance(kafka, dict):
        raise ConfigError("kafka: expected a mapping of librdkafka properties")
    settings["kafka"] = {str(k): (str(v) if not isinstance(v, bool) else str(v).lower()) for k, v in kafka.items()}
    return settings


def load(config_file: str | None = None, environ: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < file < environment < ``overrides`` (flags that were given), validated."""
    settings = copy.deepcopy(DEFAULTS)
    env = os.environ if environ is None else environ
    path = config_file or env.get("SPANSCRIBE_CONFIG")
    if path:
        _merge(settings, load_file(path))
    _merge(settings, from_env({k: v for k, v in env.items() if k != "SPANSCRIBE_CONFIG"}))
    if overrides:
        _merge(settings, {k: v for k, v in overrides.items() if v is not None})
    return validate(settings)


def kafka_config(settings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """librdkafka configuration: bootstrap plus the ``kafka`` passthrough (TLS, SASL...) plus ``extra``."""
    conf: dict[str, Any] = {"bootstrap.servers": settings["bootstrap_servers"]}
    conf.update(settings.get("kafka") or {})
    conf.update(extra)
    return conf


def topic(settings: Mapping[str, Any], name: str) -> str:
    """Full topic name: ``<prefix>.<name>`` (name is sip, rtp, rtp-by-source, bindings, transcripts, calls,
    call-events, dlq)."""
    return f"{settings['topic_prefix']}.{name}"
