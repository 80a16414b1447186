"""A fault-injecting image host on 127.0.0.1 (aiohttp), for download tests and the benchmark.

Each path gets a `Route`: the bytes to serve and how to misbehave (fail N times with a status and
Retry-After, reset the connection mid-body, stall the body, drip it a byte at a time, redirect, lie about
Content-Length, answer after a fixed latency). It records how many requests were in flight at most, overall
and per host it was asked for, and can listen on several loopback addresses (127.0.0.1, 127.0.0.2, ...:
distinct hosts to a client, for per-host limits). Runs in a background thread (`ImageHost`) or as its own
process:

    python -m fakes.imagehost --images 1000 --size 100000 --latency 0.05   # prints the base URL
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from PIL import Image


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "image/jpeg"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    fail_times: int = 0  # answer `fail_status` this many times first
    fail_status: int = 503
    retry_after: str | None = None
    reset_after: int | None = None  # send this many body bytes, then drop the connection
    reset_times: int = 1_000_000
    stall_seconds: float = 0.0  # pause this long after half the body
    stall_times: int = 1_000_000
    redirect_to: str | None = None
    declared_length: int | None = None  # a Content-Length that is not the body's
    chunked: bool = False  # no Content-Length at all: the size is known only once the body ends
    drip_seconds: float = 0.0  # send the body one byte at a time, this long apart (never silent for long)


class ImageHost:
    def __init__(self, latency: float = 0.0, addresses: tuple[str, ...] = ("127.0.0.1",)):
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.latency = latency
        self.addresses = addresses
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_host: Counter[str] = Counter()
        self.max_in_flight_by_host: Counter[str] = Counter()
        self.paused = False  # while True, every request waits (a test holds a client mid-run, then lets it go)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.addresses[0]}:{self.port}"

    def url_on(self, address: str) -> str:
        return f"http://{address}:{self.port}"

    def add(self, path: str, route: Route | bytes) -> str:
        self.routes[path] = route if isinstance(route, Route) else Route(body=route)
        return f"{self.url}{path}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0]
        self.in_flight += 1
        self.in_flight_by_host[host] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_by_host[host] = max(self.max_in_flight_by_host[host], self.in_flight_by_host[host])
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1
            self.in_flight_by_host[host] -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        while self.paused:
            await asyncio.sleep(0.02)
        if self.latency:
            await asyncio.sleep(self.latency)
        route = self.routes.get(path)
        if route is None:
            return web.Response(status=404, text="not found")
        if route.fail_times > 0:
            route.fail_times -= 1
            headers = {"Retry-After": route.retry_after} if route.retry_after is not None else {}
            return web.Response(status=route.fail_status, headers=headers, text="try later")
        if route.redirect_to is not None:
            raise web.HTTPFound(route.redirect_to)
        if route.status != 200:
            return web.Response(status=route.status, text="no")
        body = route.body
        plain = not (route.chunked or route.declared_length is not None or route.reset_after is not None
                     or route.stall_seconds or route.drip_seconds)
        if plain:  # the fast path (the benchmark's): one write, no streaming bookkeeping
            return web.Response(body=body, headers={"Content-Type": route.content_type, **route.headers})
        response = web.StreamResponse(status=200, headers={"Content-Type": route.content_type, **route.headers})
        if route.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = route.declared_length if route.declared_length is not None else len(body)
        try:
            await response.prepare(request)
            if route.reset_after is not None and route.reset_times > 0:
                route.reset_times -= 1
                await response.write(body[: route.reset_after])
                await asyncio.sleep(0.05)
                if request.transport is not None:
                    request.transport.abort()  # a connection reset mid-body
                return response
            half = len(body) // 2
            if route.drip_seconds:
                for index in range(len(body)):
                    await response.write(body[index : index + 1])
                    await asyncio.sleep(route.drip_seconds)
            elif route.stall_seconds and route.stall_times > 0:
                route.stall_times -= 1
                await response.write(body[:half])
                await asyncio.sleep(route.stall_seconds)
                await response.write(body[half:])
            else:
                await response.write(body)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away (a timeout, a cap, a killed process): expected here
        return response

    # ------------------------------------------------------------ in a thread

    def start(self) -> str:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.addresses[0], 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            for address in self.addresses[1:]:  # the same port on each further loopback address
                self._loop.run_until_complete(web.TCPSite(self._runner, address, self.port).start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-image-host", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("image host did not start")
        return self.url

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop = None

    def __enter__(self) -> ImageHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def jpeg_bytes(seed: int, size: int = 100_000, side: int = 256) -> bytes:
    """A real JPEG of about `size` bytes: noise compresses badly, so the side is grown until it fits."""
    rng = random.Random(seed)
    while True:
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        if buffer.tell() >= size * 0.9 or side > 2048:
            return buffer.getvalue()
        side = int(side * 1.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000, help="approximate bytes per image")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--addresses", default="127.0.0.1", help="comma-separated loopback addresses, one port")
    args = parser.parse_args()
    addresses = args.addresses.split(",")
    host = ImageHost(latency=args.latency, addresses=tuple(addresses))
    base = jpeg_bytes(0, args.size)
    for i in range(args.images):
        # distinct bytes per image (a changed comment segment), so nothing is deduplicated
        host.routes[f"/img/{i}.jpg"] = Route(body=base[:2] + b"\xff\xfe\x00\x06" + i.to_bytes(4, "big") + base[2:])

    async def serve() -> None:
        runner = web.AppRunner(host.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, addresses[0], args.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for address in addresses[1:]:
            await web.TCPSite(runner, address, port).start()
        print(f"http://{addresses[0]}:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
