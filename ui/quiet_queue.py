"""Gradio's event queue, woken when something happens instead of polling.

gradio/queueing.py's loop sleeps `sleep_when_free` (1 ms) whenever nothing can start — an empty
queue, or events waiting for a concurrency slot — and its progress loop sleeps 10 ms: about 1,100
wake-ups a second per mounted page with nobody connected, and a busy core when an event waits for a
slot for minutes. This queue waits on an asyncio.Event set when an event is pushed or a job ends
(with a one-second safety net), so an idle server sleeps.
"""

from __future__ import annotations

import asyncio
import time

import gradio as gr
from gradio import queueing
from gradio.utils import run_coro_in_background, set_task_name

SAFETY_WAKE_S = 1.0  # a change nobody signalled (a cancelled event, say) is still seen within this


class QuietQueue(queueing.Queue):
    """queueing.Queue with its two polling loops replaced by waits on events."""

    _work_changed: asyncio.Event | None = None  # class defaults: instances are converted, not constructed
    _job_started: asyncio.Event | None = None

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._work_changed is None:  # created inside the running loop, on first use
            self._work_changed, self._job_started = asyncio.Event(), asyncio.Event()
        return self._work_changed, self._job_started

    @staticmethod
    async def _wait(event: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(event.wait(), SAFETY_WAKE_S)
        except TimeoutError:
            pass
        event.clear()  # nothing can set it between the wait's return and here: one thread, no await

    async def push(self, body, request, username):
        """Queue an event, then wake the loop that starts events."""
        result = await super().push(body, request, username)
        self._events()[0].set()
        return result

    async def process_events(self, events, batch, begin_time, fn) -> None:
        """Run a job; when it ends, a concurrency slot is free: wake the loop."""
        try:
            await super().process_events(events, batch, begin_time, fn)
        finally:
            self._events()[0].set()

    async def start_processing(self) -> None:
        """Start queued events as slots allow; the parent's loop with its 1 ms sleeps turned into waits."""
        work_changed, job_started = self._events()
        try:
            while not self.stopped:
                if len(self) == 0 or None not in self.active_jobs:
                    await self._wait(work_changed)
                    continue
                async with self.delete_lock:
                    event_batch = self.get_events()
                if not event_batch:  # events wait for a concurrency slot: sleep until a job ends
                    await self._wait(work_changed)
                    continue
                events, batch, concurrency_id = event_batch
                self.active_jobs[self.active_jobs.index(None)] = events
                event_queue = self.event_queue_per_concurrency_id[concurrency_id]
                event_queue.current_concurrency += 1
                start_time = time.time()
                fn = events[0].fn
                event_queue.start_times_per_fn[fn].add(start_time)
                for event in events:
                    if (analytics := self.event_analytics.get(event._id)) is not None:
                        analytics["status"] = "processing"
                task = run_coro_in_background(self.process_events, events, batch, start_time, fn)
                set_task_name(task, events[0].session_hash, fn._id, events[0]._id, batch)
                self._asyncio_tasks.add(task)
                task.add_done_callback(self._asyncio_tasks.discard)
                job_started.set()
                if self.live_updates:
                    self.broadcast_estimations(concurrency_id)
        finally:
            self.stopped = True
            self._cancel_asyncio_tasks()

    async def start_progress_updates(self) -> None:
        """Send pending progress while jobs run; with no job running, wait for one to start."""
        _, job_started = self._events()
        while not self.stopped:
            if not any(job is not None for job in self.active_jobs):
                await self._wait(job_started)
                continue
            for job in self.active_jobs:
                for event in job or []:
                    if event.progress_pending and event.progress:
                        event.progress_pending = False
                        self.send_message(event, event.progress)
            await asyncio.sleep(self.progress_update_sleep_when_free)


def quiet(blocks: gr.Blocks) -> None:
    """Make blocks' queue a QuietQueue (before the app starts it)."""
    blocks._queue.__class__ = QuietQueue
