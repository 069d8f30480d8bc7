"""streams.tablestore: which store a worker.store choice gives, and explicit-partition writes."""
from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from streams import tablestore


def test_memory_choice() -> None:
    url, desc = tablestore.resolve("memory")
    assert url == "memory://" and desc.startswith("memory")


def test_bad_choice() -> None:
    with pytest.raises(ValueError):
        tablestore.resolve("redis")


@pytest.mark.skipif(importlib.util.find_spec("rocksdict") is None, reason="rocksdict not installed")
@pytest.mark.parametrize("choice", ["auto", "rocksdb"])
def test_rocksdb_choices_with_rocksdict(choice: str) -> None:
    from faust.stores import by_url

    url, desc = tablestore.resolve(choice)
    assert url == f"{tablestore.SCHEME}://" and desc.startswith("rocksdb (rocksdict ")
    assert by_url(url) is tablestore.RocksStore


def test_auto_without_rocksdict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tablestore, "rocksdict_version", lambda: None)
    assert tablestore.resolve("auto")[0] == "memory://"
    with pytest.raises(RuntimeError, match="rocksdict is not installed"):
        tablestore.resolve("rocksdb")


def test_put_into_a_plain_store() -> None:
    class Table:
        data: dict[str, Any] = {}

    tablestore.put(Table, 3, "k", {"v": 1})
    assert Table.data == {"k": {"v": 1}}
