"""Adaptive batching: concurrent requests to one model gathered into one call.

A request's rows wait in a queue; a single worker task takes the first waiting request, then
keeps taking more until `max_rows` rows are gathered or `max_delay` seconds have passed since
the first, runs them as one batch (in a thread, so the event loop keeps accepting requests),
and hands each request its own slice of the result. A request larger than `max_rows` runs
alone. `max_delay` 0 with `max_rows` 0 turns batching off (each request runs as it comes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


class AdaptiveBatcher:
    def __init__(self, run: Callable[[np.ndarray], dict[str, np.ndarray]], max_rows: int = 4096,
                 max_delay: float = 0.005):
        self.run = run
        self.max_rows = int(max_rows)
        self.max_delay = float(max_delay)
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.calls = 0  # batches run, for tests and metrics
        self.rows = 0

    @property
    def enabled(self) -> bool:
        return self.max_rows > 0 and self.max_delay > 0

    async def submit(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs for `rows` (validated), computed alone or with other requests' rows."""
        loop = asyncio.get_running_loop()
        if not self.enabled or len(rows) >= self.max_rows:
            self.calls += 1
            self.rows += len(rows)
            return await loop.run_in_executor(None, self.run, rows)
        if self.queue is None:
            self.queue = asyncio.Queue()
        if self.worker is None or self.worker.done():
            self.worker = loop.create_task(self._work())
        future = loop.create_future()
        await self.queue.put((rows, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch = [first]
            size = len(first[0])
            deadline = loop.time() + self.max_delay
            while size < self.max_rows:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                if size + len(item[0]) > self.max_rows:  # it starts the next batch instead
                    await self._run(batch)
                    batch, size = [item], len(item[0])
                    deadline = loop.time() + self.max_delay
                    continue
                batch.append(item)
                size += len(item[0])
            await self._run(batch)

    async def _run(self, batch: list) -> None:
        live = [(rows, future) for rows, future in batch if not future.done()]  # a cancelled client's
        if not live:
            return
        loop = asyncio.get_running_loop()
        rows = np.concatenate([r for r, _ in live]) if len(live) > 1 else live[0][0]
        self.calls += 1
        self.rows += len(rows)
        try:
            out = await loop.run_in_executor(None, self.run, rows)
        except Exception as exc:  # every request of the batch gets the error
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for part, future in live:
            end = start + len(part)
            if not future.done():
                future.set_result({name: value[start:end] for name, value in out.items()})
            start = end
