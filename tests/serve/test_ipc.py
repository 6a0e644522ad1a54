"""Frames between the front and a replica: arrays travel out of band and arrive intact."""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from modelscale.serve.ipc import Channel, pack, read_message


def test_blocking_round_trip_keeps_arrays_and_structure() -> None:
    a, b = socket.socketpair()
    try:
        msg = (
            "run",
            7,
            {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "m": np.ones((2, 0))},
            [1, 2],
            ["y"],
        )
        Channel(a).send(msg)
        got = Channel(b).recv()
        assert got[0] == "run" and got[1] == 7 and got[3:] == ([1, 2], ["y"])
        np.testing.assert_array_equal(got[2]["x"], msg[2]["x"])
        assert got[2]["m"].shape == (2, 0)
        big = np.random.default_rng(0).standard_normal(
            (256, 1024)
        )  # 2 MiB: larger than socket buffers
        import threading

        t = threading.Thread(target=Channel(a).send, args=(("ok", big),))
        t.start()
        out = Channel(b).recv()
        t.join()
        np.testing.assert_array_equal(out[1], big)
    finally:
        a.close()
        b.close()


def test_asyncio_reader_reads_what_the_channel_sends() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=a)
        Channel(b).send(("ready", 123))
        assert await read_message(reader) == ("ready", 123)
        writer.writelines(pack(("stop",)))
        await writer.drain()
        assert Channel(b).recv() == ("stop",)
        b.close()
        try:
            await read_message(reader)
        except asyncio.IncompleteReadError:
            pass
        else:
            raise AssertionError("expected end of stream")
        writer.close()

    asyncio.run(main())


def test_small_messages_are_one_write_and_large_ones_are_not_copied() -> None:
    small = pack(("run", 1, {"x": np.zeros((8, 32), dtype=np.int64)}, [8], ["y"]))
    assert len(small) == 1  # the replica wakes up once per batch
    big = pack(("ok", np.zeros((1024, 1024), dtype=np.float32)))
    assert len(big) > 1
    a, b = socket.socketpair()
    try:
        for part in small:
            a.sendall(part)
        got = Channel(b).recv()
        assert got[2]["x"].shape == (8, 32) and got[3:] == ([8], ["y"])
    finally:
        a.close()
        b.close()
