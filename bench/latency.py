"""A far server on loopback: a TCP relay that holds every chunk for a while, each way.

This kernel has no netem, so the benchmark puts this relay between the desk
and its servers to show what the desk does when the IMAP and SMTP servers sit
a round trip away, as they do in a real deployment (the SMTP floor goes
through the same relay).  The relay runs as a process of its own, so its work
does not compete with the in-process SMTP sink for one interpreter lock.

    python bench/latency.py --to 127.0.0.1:1025 --delay-ms 2   # prints the port it listens on

Each chunk read from one side is written to the other ``delay`` later, in
order; nothing limits the bandwidth.  An end of stream on one side is passed
on, after the same delay, as the end of the other.
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

CHUNK = 65536


class DelayRelay:
    """``start()`` runs the relay process; ``port`` is where it listens, on 127.0.0.1."""

    def __init__(self, host: str, port: int, delay_ms: float) -> None:
        self.host, self.upstream_port, self.delay_ms = host, port, delay_ms
        self.port = 0
        self._proc: subprocess.Popen | None = None

    def start(self) -> "DelayRelay":
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--to", f"{self.host}:{self.upstream_port}",
             "--delay-ms", str(self.delay_ms)], stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the delay relay did not start (it said {line!r})")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc.stdout.close()
            self._proc = None


async def _pass_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await held.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(CHUNK):
            held.put_nowait((loop.time() + delay, data))
    except OSError:
        pass
    finally:
        held.put_nowait((loop.time() + delay, b""))
        try:
            await delivering
        except OSError:
            pass


async def _relay(upstream: tuple[str, int], delay: float) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            far_reader, far_writer = await asyncio.open_connection(*upstream)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pass_on(reader, far_writer, delay), _pass_on(far_reader, writer, delay))
        finally:
            far_writer.close()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True, help="HOST:PORT of the server behind the relay")
    parser.add_argument("--delay-ms", type=float, required=True, help="how long each chunk is held, each way")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    try:
        asyncio.run(_relay((host, int(port)), args.delay_ms / 1000))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
