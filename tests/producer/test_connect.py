"""The asyncio client packs commands with hiredis (C), as the sync client does: the same bytes
as redis-py's Python packer for every kind of argument the producer sends, and a real round trip
through it."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from producer.connect import hiredis_packing, open_async
from tests.conftest import uid


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "p:{1/16.0}:thread:u:t", "p:{1/16.0}:buf:u:t", 30000, "m1", '{"content":"日本語 ok"}'),
        ("SCRIPT LOAD", "return 1"),  # a command name of two words is split, as redis-py does
        ("SET", b"k", b"\x00\xff", "EX", 10),
        ("ZADD", "z", 1.5, "m"),
    ],
)
def test_packing_is_byte_for_byte_redis_pys(args: tuple) -> None:
    python = Connection().pack_command(*args)
    packed = hiredis_packing(Connection)().pack_command(*args)
    assert b"".join(packed) == b"".join(python)


def test_every_connection_kind_keeps_its_class_and_is_packed_once() -> None:
    for cls in (Connection, SSLConnection, UnixDomainSocketConnection):
        packed = hiredis_packing(cls)
        assert issubclass(packed, cls) and packed.pack_command is not cls.pack_command
        assert hiredis_packing(cls) is packed


def test_a_bad_argument_is_a_data_error_as_before() -> None:
    with pytest.raises(DataError):
        hiredis_packing(Connection)().pack_command("SET", "k", object())


def test_the_async_client_round_trips_through_it(redis_url: str) -> None:
    async def run() -> tuple[bytes | None, type]:
        client = open_async(redis_url)
        key = f"{uid('pack')}:k"
        try:
            await client.set(key, "値 with spaces", ex=30)
            return await client.get(key), client.connection_pool.connection_class
        finally:
            await client.delete(key)
            await client.aclose()

    value, cls = asyncio.run(run())
    assert value == "値 with spaces".encode()
    assert issubclass(cls, Connection) and cls.pack_command is not Connection.pack_command
