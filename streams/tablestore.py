"""The worker's table store: RocksDB (through rocksdict) where it is installed, memory otherwise.

Both keep the changelog topics, so either recovers a restarted worker's tables; RocksDB keeps them on
disk too (``<data dir>/v1/tables/<table>-<partition>.db``), so a restart reads only the changelog
records written after the last commit instead of every changelog from its start.

Faust's RocksDB store has one database per partition and picks it from the *current event*: a write
outside an event fails (``assert event is not None``, faust-streaming#261) and a read under an event
looks only in that event's partition. The worker writes some entries from tasks (STT results, timers)
under an explicit partition (``streams.app`` ``table_put``), and a task inherits the event of the agent
that created it. :class:`RocksStore` therefore reads a key wherever it is (its key index, else every
open partition, bloom filters first) and offers :func:`put` with an explicit partition; the memory
store, a single dict, needs neither.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: the URL scheme of :class:`RocksStore` (registered with Faust's store registry on first use)
SCHEME = "spanscribe-rocksdb"
CHOICES = ("auto", "rocksdb", "memory")


def rocksdict_version() -> str | None:
    """The installed rocksdict's version, or None when it does not import."""
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rocksdict")
    except PackageNotFoundError:  # pragma: no cover - imported but not installed as a distribution
        return "unknown"


def resolve(choice: str) -> tuple[str, str]:
    """``(faust store URL, description for the log)`` of a ``worker.store`` choice."""
    if choice not in CHOICES:
        raise ValueError(f"worker.store must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice in ("auto", "rocksdb"):
        ver = rocksdict_version()
        if ver is not None:
            register()
            return f"{SCHEME}://", f"rocksdb (rocksdict {ver}; store {choice})"
        if choice == "rocksdb":
            raise RuntimeError("store rocksdb requested but rocksdict is not installed "
                               "(pip install 'spanscribe[centre]' on a platform with rocksdict wheels)")
        return "memory://", "memory (store auto: rocksdict is not installed; tables recover from changelogs)"
    return "memory://", "memory (store memory; tables recover from changelogs)"


def register() -> None:
    from faust.stores import STORES

    STORES.aliases.setdefault(SCHEME, f"{__name__}:RocksStore")


def put(table: Any, partition: int, key: Any, value: Any) -> None:
    """Store ``table[key] = value`` in ``partition``'s database (RocksDB) or the dict (memory), without
    a changelog record (the caller sends it) and without needing a current event."""
    store = table.data
    put_in = getattr(store, "put_in", None)
    if put_in is not None:
        put_in(partition, key, value)
    else:
        store[key] = value


try:
    from faust.stores.rocksdb import Store as _FaustRocksStore
except ImportError:  # pragma: no cover - faust is an extra (centre)
    pass
else:
    class RocksStore(_FaustRocksStore):
        """Faust's RocksDB store, reading keys in any partition and writing to an explicit one."""

        def _get(self, key: bytes) -> bytes | None:
            indexed = self._key_index.get(key)
            if indexed is not None and indexed in self._dbs:
                value = self._dbs[indexed].get(key)
                if value is not None:
                    return value  # type: ignore[no-any-return]
            for partition, db in list(self._dbs.items()):  # RocksDB's bloom filters make a miss cheap
                if partition == indexed:
                    continue
                value = db.get(key)
                if value is not None:
                    self._key_index[key] = partition
                    return value  # type: ignore[no-any-return]
            return None

        def _contains(self, key: bytes) -> bool:
            return self._get(key) is not None

        def put_in(self, partition: int, key: Any, value: Any) -> None:
            k = self._encode_key(key)
            self._db_for_partition(partition).put(k, self._encode_value(value))
            self._key_index[k] = partition
