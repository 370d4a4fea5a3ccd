"""Wiring and lifecycle: storage → outbox → scheduler → features → connection.

`App` owns one running bot. Startup opens storage, starts the outbox and
scheduler and runs the features' startup hooks; the supervisor then keeps a
connection alive and every event goes through `handle()`: message hygiene
(own, duplicate, foreign-room and old messages), activity counting, member
lifecycle, then the features. Shutdown runs in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from bot.adapter import Connection, reachable
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.context import Context
from bot.events import (
    Event,
    Incoming,
    LoggedIn,
    LoggedOut,
    MemberJoined,
    MemberLeft,
    Outgoing,
    RoomTopicChanged,
)
from bot.outbox import Outbox
from bot.router import Dispatcher, Router
from bot.scheduler import Scheduler
from bot.supervisor import Conn, Supervisor
from storage.store import Store

log = logging.getLogger("qunbot")

ALIVE_KEY = "alive_ts"
STOP_DRAIN_S = 15.0  # a clean stop waits this long for queued messages (governor pace: ~2 s each)
ALIVE_EVERY_S = 60.0


def feature_routers() -> list[Router]:
    """Every feature, in dispatch order (commands are unique; fallbacks run in this order)."""
    from handlers import (
        admin,
        analytics,
        announce,
        checkin,
        core,
        faq,
        lottery,
        privacy,
        signup,
        welcome,
    )

    # FAQ last among fallbacks: any other feature's keyword handling comes first.
    return [
        core.router,
        admin.router,
        privacy.router,
        signup.router,
        checkin.router,
        lottery.router,
        announce.router,
        analytics.router,
        welcome.router,
        faq.router,
    ]


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        endpoint: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        routers: Sequence[Router] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        backoff_initial: float = 1.0,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint or settings.puppet.endpoint
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.dispatcher = Dispatcher(routers if routers is not None else feature_routers())
        self._on_error = on_error
        self._backoff_initial = backoff_initial
        self.store: Store | None = None
        self.ctx: Context | None = None
        self.supervisor: Supervisor | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.logins = 0
        self.gateway: Any = None  # the sandbox gateway, when this process runs one
        self.ready = asyncio.Event()  # set on each login, cleared on disconnect
        # message id -> times it reached handle(), answered or ignored (tests, console)
        self.handled: dict[str, int] = {}
        self.events_handled = 0  # every event, messages and lifecycle alike
        self._in_flight = 0  # events being handled right now
        self._stopping = False
        self._changed = asyncio.Event()  # replaced on every change: see _poke

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        # The store's flush timer runs on real time: its 2 s bound is about crashes, not about
        # the app's (possibly simulated) clock; days come from the timestamps it is given.
        self.store = await Store.open(
            s.data_dir,
            tz=s.timezone,
            backup_keep=s.backup_keep,
            flush_s=s.activity_flush_s,
        )
        outbox = Outbox(
            self._send,
            s.send,
            clock=self.clock,
            rng=self.rng,
            tz=s.timezone,
            on_report=self._report,
        )
        scheduler = Scheduler(
            tz=s.timezone,
            ledger=self.store.firings,
            clock=self.clock,
            misfire_grace_s=s.misfire_grace_s,
        )
        self.ctx = Context(
            settings=s,
            store=self.store,
            outbox=outbox,
            scheduler=scheduler,
            clock=self.clock,
            on_error=self._error,
        )
        self.ctx.services["dispatcher"] = self.dispatcher
        self.ctx.services["app"] = self
        await outbox.start()
        await self._mark_crash_outage()
        self.spawn(self._alive())
        for hook in self.dispatcher.startups():
            await hook(self.ctx)
        await scheduler.start()
        self.supervisor = Supervisor(
            self._connect,
            reachable=lambda: reachable(self.endpoint),
            on_up=self._up,
            on_down=self._down,
            watchdog_s=s.puppet.watchdog_s,
            backoff_initial=self._backoff_initial,
            rng=self.rng,
        )
        self._run_task = asyncio.create_task(self.supervisor.run(), name="supervisor")
        self._run_task.add_done_callback(self._supervisor_ended)
        log.info(
            "bot started: endpoint=%s rooms=%d data_dir=%s", self.endpoint, len(s.rooms), s.data_dir
        )

    async def stop(self) -> None:
        """Reverse of start: refuse new events and firings, let handlers in flight finish,
        deliver what is queued while still connected, then disconnect and close storage."""
        self._stopping = True
        if self.ctx:
            await self.ctx.scheduler.shutdown()
        # Real time, not the app clock: a test's FakeClock must not stall shutdown.
        with contextlib.suppress(asyncio.TimeoutError):
            await self.wait_until(lambda: self._in_flight == 0, timeout=10)
        if self.ctx:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.outbox.wait_idle(), timeout=STOP_DRAIN_S)
        if self.supervisor:
            self.supervisor.stop()
        if self._run_task:
            await self._run_task
        if self.ctx:
            left = sum(self.ctx.outbox.stats().queued.values())
            if left:
                log.warning(
                    "stopping with %d unsent message(s) in the queue; they are dropped", left
                )
            await self.ctx.outbox.stop(drain_timeout=0)
        if self.store and not any(o.end_ts is None for o in self.store.outages.list()):
            # Not listening until the next login: those days are incomplete in reports.
            await self.store.outages.open(self.clock.now())
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.store:
            await self.store.close()
        log.info("bot stopped")

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self._stopping:
            exc = task.exception()
            assert exc is not None
            log.critical(
                "the connection supervisor died; the bot no longer reconnects", exc_info=exc
            )
            self._error(exc)

    async def _mark_crash_outage(self) -> None:
        """A clean stop records an outage; a crash (kill -9, power loss) cannot. The last
        "alive" mark tells since when nobody listened, so those days are flagged too."""
        assert self.store is not None
        alive = self.store.kv.get(ALIVE_KEY)
        if isinstance(alive, int | float) and not any(
            o.end_ts is None for o in self.store.outages.list()
        ):
            await self.store.outages.open(float(alive))
            log.warning("the previous run ended without a clean stop; offline since %.0f", alive)

    async def _alive(self) -> None:
        assert self.store is not None
        while True:
            await self.store.kv.set(ALIVE_KEY, self.clock.now())
            await asyncio.sleep(ALIVE_EVERY_S)  # real time: it bounds what a crash can hide

    def _connect(self) -> Conn:
        token = self.settings.puppet.token.get_secret_value()
        return Connection(self.endpoint, token, self._on_event, self._event_error)

    async def _up(self, conn: Conn) -> None:
        assert self.ctx is not None
        assert isinstance(conn, Connection)
        self.ctx.directory = conn
        self._poke()

    async def _down(self, reason: str) -> None:
        self.ready.clear()
        self._poke()
        assert self.store is not None
        if not any(o.end_ts is None for o in self.store.outages.list()):
            await self.store.outages.open(self.clock.now())
            log.warning("disconnected: %s", reason)

    async def _send(self, out: Outgoing) -> str:
        # Hold the queue while disconnected (however long) rather than burn retries.
        await self.ready.wait()
        conn = self.supervisor.current if self.supervisor else None
        if not isinstance(conn, Connection):
            raise ConnectionError("not connected")
        return await conn.send(out)

    async def _report(self, text: str) -> None:
        log.warning("outbox: %s", text)
        if self.ctx:
            await self.ctx.tell_managers(text)

    def _error(self, exc: BaseException) -> None:
        if self._on_error:
            self._on_error(exc)

    def _event_error(self, exc: BaseException, where: str) -> None:
        log.error("error handling %s", where, exc_info=exc)
        self._error(exc)

    # --- events -------------------------------------------------------------
    async def _on_event(self, event: Event) -> None:
        await self.handle(event)

    async def handle(self, event: Event) -> None:
        if self._stopping:
            return  # the service may still deliver while we disconnect; storage is closing
        self._in_flight += 1
        try:
            await self._handle(event)
        finally:
            self._in_flight -= 1
            if isinstance(event, Incoming):
                self.handled[event.msg_id] = self.handled.get(event.msg_id, 0) + 1
            self.events_handled += 1
            self._poke()

    async def _handle(self, event: Event) -> None:
        ctx = self.ctx
        assert ctx is not None and self.store is not None
        if isinstance(event, Incoming):
            await self._hygiene_then_dispatch(event, ctx)
            return
        if isinstance(event, LoggedIn):
            try:
                await self._login(event, ctx)
            except Exception as exc:  # noqa: BLE001 - login work must not leave the bot mute
                log.exception("login work failed")
                self._error(exc)
        elif isinstance(event, LoggedOut):
            # The account was logged out: nothing can be sent on this session. Record the
            # outage and start a fresh connection, whose login runs the login work again.
            await self._down(f"logged out ({event.self_id})")
            if self.supervisor:
                self.supervisor.drop()
        elif isinstance(event, MemberJoined | MemberLeft | RoomTopicChanged):
            if not ctx.serves(event.room_id):
                return
            await self._lifecycle(event, ctx)
        for listener in self.dispatcher.listeners(event):
            await listener(event, ctx)
        if isinstance(event, LoggedIn):
            self.ready.set()  # after every feature's login work

    async def _hygiene_then_dispatch(self, msg: Incoming, ctx: Context) -> None:
        if msg.is_self or msg.sender_id == ctx.self_id:
            return  # our own message, echoed back by the service
        if msg.room_id is not None and not ctx.serves(msg.room_id):
            return
        assert self.store is not None
        if not await self.store.seen.check_and_mark(msg.msg_id):
            return  # delivered before (duplicate, reconnect replay, restart)
        if msg.room_id is not None:
            await self._count(msg, ctx)
        if ctx.clock.now() - msg.timestamp > self.settings.reply_window:
            return  # too old to answer; it was counted above
        await self.dispatcher.dispatch(msg, ctx)

    async def _count(self, msg: Incoming, ctx: Context) -> None:
        assert self.store is not None and msg.room_id is not None
        if msg.sender_id in self.settings.bots:
            return
        if self.settings.privacy.mode == "opt-in" and not self.store.kv.get(
            f"optin:{msg.sender_id}"
        ):
            return
        if self.store.members.get(msg.room_id, msg.sender_id) is None:
            await self.store.members.record_seen(
                msg.room_id, msg.sender_id, msg.sender_name, msg.timestamp
            )
        self.store.activity.touch(msg.room_id, msg.sender_id, msg.timestamp)

    async def _lifecycle(
        self, event: MemberJoined | MemberLeft | RoomTopicChanged, ctx: Context
    ) -> None:
        assert self.store is not None
        if isinstance(event, MemberJoined):
            for m in event.members:
                if m.id != ctx.self_id:
                    await self.store.members.record_join(
                        event.room_id,
                        m.id,
                        m.name,
                        event.timestamp,
                        event.channel,
                        event.inviter_id,
                    )
        elif isinstance(event, MemberLeft):
            for member_id in event.member_ids:
                await self.store.members.record_leave(event.room_id, member_id, event.timestamp)
        else:
            ctx.remember_topic(event.room_id, event.new_topic)

    async def _login(self, event: LoggedIn, ctx: Context) -> None:
        """Login work: runs once per connection (wechaty fires login once per instance)."""
        assert self.store is not None
        self.logins += 1
        ctx.self_id, ctx.self_name = event.self_id, event.name
        await self._resolve_rooms(ctx)
        await self._sync_members(ctx)
        open_outage = next((o for o in self.store.outages.list() if o.end_ts is None), None)
        if open_outage is not None:
            await self.store.outages.close(self.clock.now())
            minutes = (self.clock.now() - open_outage.start_ts) / 60
            if self.logins > 1:
                await ctx.tell_managers(
                    f"连接已恢复，中断约 {minutes:.0f} 分钟；期间的统计日标记为不完整。"
                    if self.settings.language == "zh"
                    else f"Back online after about {minutes:.0f} min; affected days are flagged incomplete."
                )
        log.info("logged in as %s (%s), login #%d", event.self_id, event.name, self.logins)

    async def _resolve_rooms(self, ctx: Context) -> None:
        directory = ctx.directory
        by_topic = [r for r in self.settings.rooms if not r.id and r.topic]
        ids = set(self.settings.room_ids)
        if by_topic and directory is not None and isinstance(directory, Connection):
            topics = {}
            for rid in await directory.room_ids():
                try:
                    topics[await directory.room_topic(rid)] = rid
                except Exception as e:  # noqa: BLE001 - one unreadable room must not stop login
                    log.warning("cannot read the topic of room %s: %r", rid, e)
            for r in by_topic:
                if r.topic in topics:
                    ids.add(topics[r.topic])
                    log.warning(
                        "room %r resolved by topic to %s; topics can change, prefer the id",
                        r.topic,
                        topics[r.topic],
                    )
                else:
                    log.warning("room with topic %r not found; it is not served", r.topic)
            # From now on the room's settings (welcome, quiet hours, notice) are found by id.
            rooms = [
                r.model_copy(update={"id": topics[r.topic]})
                if not r.id and r.topic in topics
                else r
                for r in self.settings.rooms
            ]
            self.settings = ctx.settings = self.settings.model_copy(update={"rooms": rooms})
        ctx.services["resolved_rooms"] = frozenset(ids)

    async def _sync_members(self, ctx: Context) -> None:
        """Members present when the bot arrives get their first-seen day (SPEC section 6)."""
        assert self.store is not None
        if ctx.directory is None:
            return
        now = self.clock.now()
        for room_id in ctx.served_rooms():
            try:
                ctx.remember_topic(room_id, await ctx.directory.room_topic(room_id))
                live = await ctx.directory.room_members(room_id)
            except Exception as e:  # noqa: BLE001 - a room we cannot read is skipped, not fatal
                log.warning("cannot read room %s: %r", room_id, e)
                continue
            for m in live:
                if m.id != ctx.self_id and self.store.members.get(room_id, m.id) is None:
                    await self.store.members.record_seen(room_id, m.id, m.name, now)

    # --- waiting (tests, console) ---------------------------------------------
    async def wait_ready(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def wait_handled(self, msg_id: str, timeout: float = 15.0) -> None:
        """Until the message with this id has been through handle() (answered, or ignored)."""
        await self.wait_until(lambda: msg_id in self.handled, timeout)

    async def wait_until(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        """Until `check()` holds; re-checked whenever an event was handled or the connection
        went up or down, so waiting needs no polling."""
        async with asyncio.timeout(timeout):
            while not check():
                await self._changed.wait()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- running ----------------------------------------------------------
    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
