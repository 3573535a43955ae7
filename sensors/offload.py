"""Run one observer (detection) in a forked worker process, pipelined with the sensor.

Parsing and detection are both CPU-bound Python; on one core their costs add up. Here the sensor
parses batch N while the worker scores batch N-1 on a second core. The output is the same as with
the observer inline: the worker sees the same events in the same order, with the same state, and
each event's alerts are put back right after it. Only the timing changes: a batch reaches the sinks
when the next one is drained (one batch later), and `Sensor.end()` waits for everything.

The worker is forked, so it inherits the observer already built (rules compiled, learned state
loaded) and nothing has to be pickled but the events. Events cross as plain tuples (pickle, about
2 us each on the sensor's side); the alerts come back as Event objects (they are few).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from icsight.events import Endpoint, Event, Origin

log = logging.getLogger(__name__)

Observer = Callable[[Event], Iterable[Event] | None]
SKIP_KINDS = frozenset(("alert", "asset"))   # what detection never looks at: not sent


def can_offload() -> bool:
    """True where a forked worker helps: 2+ CPUs, fork available, no other thread running yet."""
    return ((os.cpu_count() or 1) >= 2 and "fork" in mp.get_all_start_methods()
            and threading.active_count() == 1)


def _pack(ev: Event) -> tuple:
    s, d, o = ev.src, ev.dst, ev.origin
    return (ev.id, ev.ts, ev.kind, ev.tenant, ev.sensor, s.ip, s.port, s.mac, d.ip, d.port, d.mac, ev.action,
            ev.fields, o.capture, o.frames)


def _serve(observer: Observer, inbox: Any, outbox: Any) -> None:
    """The worker: score each batch of packed events; answer [(position, alerts)...] per batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the sensor's: it stops, then drains us
    gc.disable()
    gc.freeze()                 # the inherited state: never rescanned (and its pages stay shared)
    endpoints: dict[tuple, Endpoint] = {}
    origins: dict[tuple, Origin] = {}
    fast = Event.fast
    batches = 0
    while True:
        msg = inbox.get()
        if msg is None:
            break
        try:
            if msg == b"finish":
                finish = getattr(observer, "finish", None)
                outbox.put(("ok", [(-1, list(finish() or ()))] if finish is not None else []))
                continue
            hits = []
            for i, t in enumerate(pickle.loads(msg)):
                k = (t[5], t[6], t[7])
                src = endpoints.get(k)
                if src is None:
                    src = endpoints[k] = Endpoint(*k)
                k = (t[8], t[9], t[10])
                dst = endpoints.get(k)
                if dst is None:
                    dst = endpoints[k] = Endpoint(*k)
                k = (t[13], t[14])
                org = origins.get(k)
                if org is None:
                    org = Origin(*k)
                    if len(origins) < 100_000:
                        origins[k] = org
                more = observer(fast(t[0], t[1], t[2], t[3], t[4], src, dst, t[11], t[12], org))
                if more:
                    hits.append((i, list(more)))
            if len(endpoints) > 100_000:
                endpoints.clear()
            outbox.put(("ok", hits))
            batches += 1
            gc.collect(2 if batches % 8 == 0 else 1)
        except BaseException:       # any failure is reported to the sensor, which raises it
            outbox.put(("error", traceback.format_exc()))
            break


class Offloaded:
    """An observer run in a forked worker. `submit` a batch, `collect` its alerts (in submit order)."""

    def __init__(self, observer: Observer) -> None:
        ctx = mp.get_context("fork")
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=_serve, args=(observer, self.inbox, self.outbox), daemon=True,
                                name="icsight-detect")
        self.proc.start()
        self.closed = False

    def submit(self, events: list[Event]) -> list[int]:
        """Send the events the observer wants; returns their positions in `events`."""
        pos = [i for i, e in enumerate(events) if e.kind not in SKIP_KINDS]
        self.inbox.put(pickle.dumps([_pack(events[i]) for i in pos], pickle.HIGHEST_PROTOCOL))
        return pos

    def collect(self) -> list[tuple[int, list[Event]]]:
        """The next batch's answer: (position among the submitted events, alerts after it)."""
        while True:
            try:
                status, body = self.outbox.get(timeout=5.0)
                break
            except queue.Empty:     # is the worker still alive?
                if not self.proc.is_alive():
                    raise RuntimeError(f"detection worker died (exit code {self.proc.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"detection worker failed:\n{body}")
        return body

    def finish(self) -> list[Event]:
        """The observer's end-of-input alerts (after every submitted batch)."""
        self.inbox.put(b"finish")
        return [a for _, alerts in self.collect() for a in alerts]

    def close(self) -> None:
        """Stop the worker (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self.proc.is_alive():
            self.inbox.put(None)
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.inbox.cancel_join_thread()     # the worker is gone: exit never waits on input it left unread
        self.inbox.close()
        self.outbox.close()
