"""A TCP proxy for fault tests that can black-hole a link: the test harness's stand-in for a
network partition that drops packets (as opposed to one that resets connections).

- forwarding: every connection is piped to the upstream address, both ways;
- `blackhole()`: every connection stops moving bytes in both directions but stays open, and
  new connections are accepted and then held the same way, so a peer sees no error at all,
  only silence (what a paused process or a dropping firewall looks like);
- `heal()`: new connections are forwarded again; connections held during the black hole stay
  silent forever, as flows whose state a partition lost;
- `delay(ms)`: every chunk forwarded from then on waits `ms` first (0: no delay), a slow link
  rather than a dead one; `heal()` also ends the delay.

Runs its own asyncio loop on a thread; only ever listens on and connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading

CHUNK = 64 * 1024


class BlackholeProxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"blackhole-proxy-{upstream_port}")
        self._blackholed = False
        self._delay_s = 0.0
        self._generation = 0  # bumped by blackhole(): pipes of older generations go silent
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock

    def start(self) -> BlackholeProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def blackhole(self) -> None:
        self._call(self._set, True)

    def heal(self) -> None:
        self._call(self._set, False)
        self._delay_s = 0.0

    def delay(self, ms: int) -> None:
        self._delay_s = ms / 1000

    def stop(self) -> None:
        async def close():
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # -- internals (on the proxy's loop) ---------------------------------------------------

    def _call(self, fn, *args) -> None:
        async def run():
            fn(*args)
        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def _set(self, blackholed: bool) -> None:
        if blackholed and not self._blackholed:
            self._generation += 1
        self._blackholed = blackholed

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._sock)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # stop(): ends quietly (asyncio logs a cancelled connection callback)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self._blackholed:
            await self._hold(writer)
            return
        generation = self._generation
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer, generation),
                             self._pipe(up_reader, writer, generation))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    generation: int) -> None:
        try:
            while True:
                if self._generation != generation:
                    await self._hold(writer)
                    return
                try:
                    data = await asyncio.wait_for(reader.read(CHUNK), timeout=0.2)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    break
                if self._delay_s:
                    await asyncio.sleep(self._delay_s)
                if self._generation != generation:
                    await self._hold(writer)  # the bytes just read are dropped
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()
        self._writers.discard(writer)

    async def _hold(self, writer: asyncio.StreamWriter) -> None:
        """Keeps the connection open and silent until the proxy stops."""
        try:
            await asyncio.Event().wait()
        finally:
            writer.close()
