"""Live events over WebSocket (``/api/v2/messages/ws``), fanned out across API processes by Redis pub/sub.

Each API process runs one ``EventHub``: a single pattern subscription to ``{prefix}events:*`` whose
listener hands every event to the sockets of its user connected to this process. Each socket has
its own bounded queue drained by its own task, so a slow client never holds up the others: when
its queue is full the oldest event is dropped (the REST endpoints are the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from iam_cluster import events
from iam_cluster.api.errors import APIError
from iam_cluster.api.limits import RedisDown
from iam_cluster.api.security import decode_access_token
from iam_cluster.db.queries import QUERIES

log = logging.getLogger(__name__)

#: Events a socket may have waiting before the oldest is dropped.
QUEUE_SIZE = 256
#: WebSocket close codes: bad or missing token (or inactive user); another user's id asked for.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
#: Largest client frame accepted, in characters.
MAX_CLIENT_MESSAGE = 4096


class _ClientEvent(msgspec.Struct):
    type: str
    data: dict = {}


class Subscriber:
    """One connected socket's outbox: a bounded queue of encoded events."""

    __slots__ = ("user_id", "queue", "dropped")

    def __init__(self, user_id: str, size: int = QUEUE_SIZE) -> None:
        self.user_id = user_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, text: str) -> None:
        """Queues ``text``; when the queue is full the oldest event goes to make room."""
        while True:
            try:
                self.queue.put_nowait(text)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                    self.dropped += 1


class EventHub:
    """The process's Redis listener and its registry of local sockets by user."""

    def __init__(self, redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.pattern = events.channel(prefix, "*")
        self._channel_prefix = events.channel(prefix, "")
        self.local: dict[str, set[Subscriber]] = {}
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="iam-event-hub")
        with contextlib.suppress(TimeoutError):  # Redis down at start: the listener keeps retrying
            await asyncio.wait_for(self.ready.wait(), 5.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def add(self, user_id: str) -> Subscriber:
        sub = Subscriber(user_id)
        self.local.setdefault(user_id, set()).add(sub)
        return sub

    def remove(self, sub: Subscriber) -> None:
        subs = self.local.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.local[sub.user_id]

    def dispatch(self, channel: str, payload: str) -> None:
        if not channel.startswith(self._channel_prefix):
            return
        for sub in tuple(self.local.get(channel[len(self._channel_prefix):], ())):
            sub.offer(payload)

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(self.pattern)
                self.ready.set()
                delay = 0.2
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None or msg.get("type") != "pmessage":
                        continue
                    channel, data = msg["channel"], msg["data"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    if isinstance(data, bytes):
                        data = data.decode()
                    self.dispatch(channel, data)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis restarted or unreachable: resubscribe after a pause
                log.warning("event hub: Redis subscription lost; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


async def start_hub(app) -> None:
    """Starts the process's hub (lifespan); ``app.state.redis`` and ``settings`` must be set."""
    hub = EventHub(app.state.redis, app.state.settings.redis.key_prefix)
    app.state.event_hub = hub
    await hub.start()


async def stop_hub(app) -> None:
    hub = getattr(app.state, "event_hub", None)
    if hub is not None:
        await hub.stop()


async def _authenticate(socket: WebSocket) -> str | int:
    """The caller's user id, or the close code to refuse it with."""
    state = socket.app.state
    token = socket.query_params.get("token")
    if not token:
        return CLOSE_UNAUTHORIZED
    try:
        claims = decode_access_token(token, state.settings.auth)
        user_id = uuid.UUID(claims["sub"])
    except (APIError, ValueError, KeyError):
        return CLOSE_UNAUTHORIZED
    asked = socket.path_params.get("user_id") or socket.query_params.get("user_id")
    if asked is not None and asked.strip().lower() != str(user_id):
        return CLOSE_FORBIDDEN
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["get_user_by_id"], {"id": user_id})
        row = await cur.fetchone()
    if row is None:
        return CLOSE_UNAUTHORIZED
    active = row[[d.name for d in cur.description].index("is_active")]
    return str(user_id) if active else CLOSE_UNAUTHORIZED


@websocket(["/messages/ws", "/messages/ws/{user_id:str}"])
async def messages_ws(socket: WebSocket) -> None:
    """Live events for the caller: ``?token=<access token>``; a user id in the path (the product
    spec's ``/messages/ws/{user_id}``) or in ``?user_id=`` must be the caller's own."""
    await socket.accept()
    who = await _authenticate(socket)
    if isinstance(who, int):
        await socket.close(code=who, reason="unauthorized" if who == CLOSE_UNAUTHORIZED else "forbidden")
        return
    user_id = who
    state = socket.app.state
    hub: EventHub = state.event_hub
    redis, prefix = state.redis, state.settings.redis.key_prefix
    sub = hub.add(user_id)
    conn_id = uuid.uuid4().hex

    gate = state.redis_gate
    peers: set[uuid.UUID] = set()  # users this socket may send typing events to (cached checks)

    async def presence(status: str) -> None:
        with contextlib.suppress(RedisDown):  # a dead or hanging Redis never stalls the socket
            await gate.call(lambda: events.publish(redis, prefix, user_id, "presence",
                                                   {"user_id": user_id, "status": status, "connection_id": conn_id}))

    async def pump() -> None:
        while True:
            await socket.send_text(await sub.queue.get())

    sender = asyncio.create_task(pump())
    await presence("online")
    try:
        while True:
            receiving = asyncio.ensure_future(socket.receive_text())
            done, _ = await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:  # the client went away while we were sending
                receiving.cancel()
                break
            text = receiving.result()
            reply = await _handle_client(text, user_id, state, peers)
            if reply is not None:
                sub.offer(reply)
    except (WebSocketDisconnect, asyncio.CancelledError, RuntimeError):
        pass
    finally:
        hub.remove(sub)
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        await presence("offline")


async def _handle_client(text: str, user_id: str, state, peers: set[uuid.UUID]) -> str | None:
    """Answers a client frame: ``ping`` → ``pong``; ``typing`` is relayed to ``data.to`` when the two
    users share a conversation (have exchanged a message)."""
    if len(text) > MAX_CLIENT_MESSAGE:
        return _error("too_large", "message too large")
    try:
        msg = msgspec.json.decode(text, type=_ClientEvent)
    except msgspec.DecodeError:
        return _error("invalid_message", "expected JSON {\"type\", \"data\"}")
    if msg.type == "ping":
        return '{"type":"pong","data":{}}'
    if msg.type == "typing":
        try:
            to = uuid.UUID(str(msg.data.get("to")))
        except ValueError:
            return _error("invalid_message", "typing needs data.to, a user id")
        if to not in peers:
            async with state.pool.connection() as conn:
                cur = await conn.execute(QUERIES["messages_share_conversation"], {"a": user_id, "b": to})
                if not (await cur.fetchone())[0]:
                    return _error("forbidden", "typing goes only to users you share a conversation with")
            peers.add(to)
        prefix = state.settings.redis.key_prefix
        with contextlib.suppress(RedisDown):
            await state.redis_gate.call(lambda: events.publish(state.redis, prefix, to, "typing", {"from": user_id}))
        return None
    return _error("unknown_type", f"unknown message type {msg.type!r}")


def _error(code: str, message: str) -> str:
    return msgspec.json.encode({"type": "error", "data": {"code": code, "message": message}}).decode()


router = messages_ws
