"""Run one prompt on ComfyUI: queue it, follow its websocket events, collect its output, clean up.

Guarantees per prompt: a deadline (on expiry: dequeue, interrupt, free, and the history entry is
removed once ComfyUI lets go of it), crash detection (the process died or stopped answering), a
reconnect when the socket drops (then the history tells what was missed), and the history entry
deleted after collection, because it holds the prompt and therefore the user's photo.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from avatar_driver.client import ComfyClient, ComfyUnavailable, EventStream, PromptRejected, SocketDropped
from avatar_driver.errors import (
    CANCELLED,
    COMFY_CRASHED,
    COMFY_EXECUTION,
    TIMEOUT,
    WorkerError,
    from_exception_message,
)

POLL_S = 1.0  # how often a quiet wait re-checks that ComfyUI is alive
REAP_GRACE_S = 300.0  # how long an abandoned prompt is watched so its history can be deleted


def node_stages(prompt: dict, sampler_nodes: frozenset[str]) -> dict[str, str]:
    """Node id → timing stage: samplers are ``sampling``, nodes fed (directly or not) by a sampler ``encode``
    (decode, composite, image encode), all others ``preprocess``: by the graph, not by ComfyUI's execution order."""
    consumers: dict[str, set[str]] = {}
    for node_id, node in prompt.items():
        for value in node.get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                consumers.setdefault(str(value[0]), set()).add(node_id)
    downstream: set[str] = set()
    frontier = [c for s in sampler_nodes for c in consumers.get(s, ())]
    while frontier:
        node_id = frontier.pop()
        if node_id not in downstream:
            downstream.add(node_id)
            frontier.extend(consumers.get(node_id, ()))
    return {node_id: "sampling" if node_id in sampler_nodes else "encode" if node_id in downstream else "preprocess"
            for node_id in prompt}


@dataclass
class Timeline:
    """Seconds per stage (see ``node_stages``) from the websocket events; ``queue`` is until execution starts.

    Each node's time runs from its ``executing`` event to the next one; cached nodes send none and cost nothing.
    """

    stages: dict[str, str]
    queued_at: float
    started_at: float | None = None
    spans: dict[str, float] = field(default_factory=lambda: {"preprocess": 0.0, "sampling": 0.0, "encode": 0.0})
    _stage: str | None = None
    _since: float = 0.0

    @property
    def stage(self) -> str | None:
        return self._stage

    def start(self, now: float) -> None:
        self.started_at = now

    def enter(self, node_id: str, now: float) -> str:
        """A node started executing; returns its stage."""
        if self.started_at is None:
            self.start(now)
        self._close(now)
        self._stage, self._since = self.stages.get(node_id, "preprocess"), now
        return self._stage

    def finish(self, now: float) -> None:
        self._close(now)
        self._stage = None

    def _close(self, now: float) -> None:
        if self._stage is not None:
            self.spans[self._stage] += now - self._since

    def timings(self) -> dict[str, float]:
        queue = (self.started_at - self.queued_at) if self.started_at is not None else 0.0
        return {"queue": round(queue, 3), **{k: round(v, 3) for k, v in self.spans.items()}}


@dataclass
class Outcome:
    output: dict  # the output node's UI output
    timings: dict[str, float]
    reports: dict[str, dict] = field(default_factory=dict)  # the other nodes' UI outputs by node id (the face crop's)


class PromptRun:
    """One prompt on ComfyUI, from queueing to its collected output."""

    def __init__(self, client: ComfyClient, prompt: dict, output_node: str, sampler_nodes: frozenset[str],
                 alive: Callable[[], bool], on_progress: Callable[[dict], None] = lambda _: None):
        self.client = client
        self.prompt = prompt
        self.output_node = output_node
        self.sampler_nodes = sampler_nodes
        self.alive = alive
        self.on_progress = on_progress
        self.prompt_id = uuid.uuid4().hex
        self.client_id = uuid.uuid4().hex
        self.stream: EventStream = client.events(self.client_id)

    def execute(self, deadline: float, cancelled: threading.Event | None = None) -> Outcome:
        """Queue and follow the prompt until it ends; raises WorkerError, or PromptRejected at validation.

        ``cancelled`` set (the job was cancelled) or the deadline passed: the prompt is abandoned like this.
        """
        self._cancelled = cancelled or threading.Event()
        try:
            self.stream.connect()  # before queueing, so no event is missed
            timeline = Timeline(node_stages(self.prompt, self.sampler_nodes), time.monotonic())
            try:
                self.client.queue_prompt(self.prompt, self.prompt_id, self.client_id)
            except PromptRejected as rejected:
                if rejected.queued:
                    self._abandon()
                raise
            self.on_progress({"stage": "queued"})
            try:
                return self._follow(timeline, deadline)
            except WorkerError as err:
                if err.code in (TIMEOUT, CANCELLED):
                    self._abandon()
                raise
        except ComfyUnavailable as err:
            raise WorkerError(COMFY_CRASHED, f"ComfyUI stopped answering during the job ({err})") from None
        finally:
            self.stream.close()

    def _follow(self, timeline: Timeline, deadline: float) -> Outcome:
        output: dict | None = None
        reports: dict[str, dict] = {}
        failure: dict | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(TIMEOUT, "the job did not finish before its deadline; it was interrupted")
            if self._cancelled.is_set():
                raise WorkerError(CANCELLED, "the job was cancelled; its prompt was stopped")
            try:
                event = self.stream.receive(min(left, POLL_S))
            except SocketDropped:
                entry = self._resync()
                if entry is not None:
                    return self._from_history(entry, timeline)
                continue
            if event is None:
                self._check_alive()
                continue
            kind, data = event.get("type"), event.get("data") or {}
            if data.get("prompt_id") != self.prompt_id:
                continue
            now = time.monotonic()
            if kind == "execution_start":
                timeline.start(now)
                self.on_progress({"stage": "preprocess"})
            elif kind == "executing" and data.get("node") is None:  # sent after the history entry is stored
                timeline.finish(now)
                break
            elif kind == "executing":
                self.on_progress({"stage": timeline.enter(str(data["node"]), now), "node": str(data["node"])})
            elif kind == "progress":
                self.on_progress({"stage": timeline.stage, "node": str(data.get("node")),
                                  "step": data.get("value"), "steps": data.get("max")})
            elif kind == "executed" and str(data.get("node")) == self.output_node:
                output = data.get("output")
            elif kind == "executed" and data.get("output"):
                reports[str(data.get("node"))] = data["output"]
            elif kind in ("execution_error", "execution_interrupted"):
                failure = {"type": kind, **data}
        self._forget()
        return self._outcome(output, failure, timeline, reports)

    def _outcome(self, output: dict | None, failure: dict | None, timeline: Timeline,
                 reports: dict[str, dict]) -> Outcome:
        if failure is not None:
            if failure["type"] == "execution_interrupted":
                raise WorkerError(COMFY_EXECUTION, "the job was interrupted on the server")
            raise from_exception_message(failure.get("exception_message", ""), failure.get("node_type"),
                                         failure.get("exception_type"))
        if not output:
            raise WorkerError(COMFY_EXECUTION, f"the workflow finished without output from node {self.output_node}")
        return Outcome(output, timeline.timings(), reports)

    def _from_history(self, entry: dict, timeline: Timeline) -> Outcome:
        """The prompt ended while the socket was down: read its result from /history."""
        timeline.finish(time.monotonic())
        failure = None
        for kind, data in (entry.get("status") or {}).get("messages", []):
            if kind in ("execution_error", "execution_interrupted"):
                failure = {"type": kind, **data}
        self._forget()
        outputs = dict(entry.get("outputs") or {})
        return self._outcome(outputs.pop(self.output_node, None), failure, timeline, outputs)

    def _resync(self) -> dict | None:
        """After a dropped socket: reconnect (if ComfyUI lives) and return the history entry if it has ended."""
        self._check_alive()
        try:
            self.stream.reconnect()
        except ComfyUnavailable:
            self._check_alive()
            raise
        return self.client.history(self.prompt_id)

    def _check_alive(self) -> None:
        if not self.alive():
            raise WorkerError(COMFY_CRASHED, "ComfyUI exited during the job; it is being restarted, please retry")

    def _forget(self) -> None:
        self.client.delete_history(self.prompt_id)

    def _abandon(self) -> None:
        """Deadline passed or job cancelled: take the prompt out of the queue, stop it if it runs, free its cached
        outputs.

        Its history entry appears only when ComfyUI lets go of it, so a daemon thread waits for that and
        deletes it; the job does not wait.
        """
        try:
            self.client.dequeue(self.prompt_id)
            self.client.interrupt(self.prompt_id)
            self.client.free()
        except ComfyUnavailable:
            return
        threading.Thread(target=self._reap, name=f"reap-{self.prompt_id[:8]}", daemon=True).start()

    def _reap(self) -> None:
        # ComfyUI moves a prompt from "running" to the history under one lock, so once it is in neither
        # queue list, the history either has it now or never will (it was dequeued before it started).
        deadline = time.monotonic() + REAP_GRACE_S
        try:
            while time.monotonic() < deadline and self.alive():
                running, pending = self.client.queue_ids()
                if self.prompt_id not in running and self.prompt_id not in pending:
                    if self.client.history(self.prompt_id) is not None:
                        self._forget()
                    return
                time.sleep(POLL_S)
        except ComfyUnavailable:
            pass

