"""Where session state lives: one interface, kept in memory or in Redis.

`MemoryStore` is the embedded default for a single local process;
`RedisStore` (``TERMWEB_REDIS_URL``) lets every worker and instance see the
same sessions. Both pass the same contract tests (tests/test_store.py).

Connection counts change only through `attach` / `detach`, which are atomic
in both stores (a Lua script in Redis), so many clients coming and going at
once cannot make them drift. Nothing here is called on the keystroke path.
"""
from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, replace

ACTIVE = "active"            # at least one client is connected
IDLE = "idle"                # clients are connected, nothing happened for a while
DISCONNECTED = "disconnected"  # no client is connected; the shell runs on
ENDED = "ended"              # the shell is gone; the record stays a while to say why
STATUSES = (ACTIVE, IDLE, DISCONNECTED, ENDED)

# An ended session's record is kept this long, so a returning page can be
# told "this terminal ended" rather than "no such terminal".
ENDED_RETENTION_SECONDS = 3600


class StoreUnavailable(RuntimeError):
    """The store cannot be reached; what was asked did not happen."""


@dataclass
class SessionState:
    session_id: str
    user_id: str
    backend_id: str
    status: str = DISCONNECTED
    last_activity: float = 0.0
    connection_count: int = 0
    working_directory: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    # When the connection count last fell to zero; 0 while clients are connected.
    disconnected_at: float = 0.0
    ended_reason: str = ""

    @property
    def ended(self) -> bool:
        return self.status == ENDED

    def to_json(self) -> dict:
        """The API's view: camelCase keys, times in milliseconds since the epoch."""
        return {
            "sessionId": self.session_id,
            "userId": self.user_id,
            "backendId": self.backend_id,
            "status": self.status,
            "lastActivity": _ms(self.last_activity),
            "connectionCount": self.connection_count,
            "workingDirectory": self.working_directory,
            "environment": dict(self.environment),
            "createdAt": _ms(self.created_at),
            "disconnectedAt": _ms(self.disconnected_at) if self.disconnected_at else None,
            "endedReason": self.ended_reason or None,
        }

    # Flat string fields, as kept in a Redis hash.
    def to_fields(self) -> dict[str, str]:
        out = {}
        for name, value in asdict(self).items():
            out[name] = json.dumps(value) if name == "environment" else str(value)
        return out

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> "SessionState":
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict = {}
        for name, kind in kinds.items():
            if name not in raw:
                continue
            text = raw[name]
            if name == "environment":
                values[name] = json.loads(text) if text else {}
            elif kind == "int":
                values[name] = int(text or 0)
            elif kind == "float":
                values[name] = float(text or 0)
            else:
                values[name] = text
        return cls(**values)


def derived_status(state: SessionState, idle_after: float, now: float) -> str:
    """The status to show: idle is derived rather than written by a timer,
    as connected with nothing typed or printed for ``idle_after`` seconds
    (tmux's activity, copied in by every sweep)."""
    if state.status == ACTIVE and now - state.last_activity > idle_after:
        return IDLE
    return state.status


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class SessionStore(ABC):
    """Session records, keyed by session id.

    ``record_ttl`` bounds how long a live record outlives the last write to
    it (callers refresh it; the reconciler does, every sweep), so records of
    an abandoned deployment do not stay forever. Ended records live
    ``ended_retention`` seconds.
    """

    def __init__(self, record_ttl: float, ended_retention: float = ENDED_RETENTION_SECONDS):
        self.record_ttl = record_ttl
        self.ended_retention = ended_retention

    @abstractmethod
    def create(self, state: SessionState) -> None:
        """Add a new record (its id is new: ids are random)."""

    @abstractmethod
    def get(self, session_id: str) -> SessionState | None:
        """The record, or None if there is none (or it expired)."""

    @abstractmethod
    def list(self, user_id: str | None = None) -> list[SessionState]:
        """Every record, or those of one user; ended ones included."""

    @abstractmethod
    def attach(self, session_id: str, now: float) -> SessionState | None:
        """Atomically count one more connection and mark the session active.

        None when there is no live record (unknown, expired or ended).
        """

    @abstractmethod
    def detach(self, session_id: str, now: float) -> SessionState | None:
        """Atomically count one connection less (never below zero); at zero the
        session becomes disconnected. None when there is no live record."""

    @abstractmethod
    def update(self, session_id: str, **changes) -> SessionState | None:
        """Change fields other than the connection count of a live record and
        refresh its TTL; None when there is no live record."""

    @abstractmethod
    def correct_count(self, session_id: str, expected: int, actual: int, now: float) -> bool:
        """Set the connection count to ``actual`` if it is still ``expected``.

        For the reconciler, when tmux shows clients a crashed worker could not
        count out.
        """

    @abstractmethod
    def end(self, session_id: str, reason: str, now: float) -> None:
        """Mark a session ended (no connections) and keep the record a while."""

    @abstractmethod
    def delete(self, session_id: str) -> None:
        """Forget a record at once."""

    @abstractmethod
    def lead(self, name: str, holder: str, ttl: float) -> bool:
        """Hold the named lease for ``ttl`` s if it is free or already ours.

        One worker among all instances sweeps at a time.
        """

    @abstractmethod
    def get_setting(self, name: str) -> str | None:
        """A value every worker and instance shares (e.g. the backend pool's size)."""

    @abstractmethod
    def set_setting(self, name: str, value: str) -> None: ...

    def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot be reached."""

    def close(self) -> None:
        pass


def _with_count(state: SessionState, count: int, now: float) -> SessionState:
    count = max(0, count)
    if count == 0:
        return replace(state, connection_count=0, status=DISCONNECTED, disconnected_at=now)
    status = ACTIVE if state.status == DISCONNECTED else state.status
    return replace(state, connection_count=count, status=status, disconnected_at=0.0)


class MemoryStore(SessionStore):
    """Records in this process: right for one worker, wrong for several
    (gunicorn.conf.py refuses that combination at start-up)."""

    def __init__(self, record_ttl: float, ended_retention: float = ENDED_RETENTION_SECONDS):
        super().__init__(record_ttl, ended_retention)
        self._records: dict[str, tuple[SessionState, float]] = {}  # id -> (state, expires at)
        self._leases: dict[str, tuple[str, float]] = {}
        self._settings: dict[str, str] = {}
        self._lock = threading.Lock()

    def _live(self, session_id: str) -> SessionState | None:
        entry = self._records.get(session_id)
        if entry is None:
            return None
        state, expires = entry
        if expires <= time.monotonic():
            del self._records[session_id]
            return None
        return state

    def _put(self, state: SessionState) -> SessionState:
        ttl = self.ended_retention if state.ended else self.record_ttl
        self._records[state.session_id] = (state, time.monotonic() + ttl)
        return replace(state)

    def create(self, state: SessionState) -> None:
        with self._lock:
            self._put(replace(state, environment=dict(state.environment)))

    def get(self, session_id: str) -> SessionState | None:
        with self._lock:
            state = self._live(session_id)
            return replace(state) if state else None

    def list(self, user_id: str | None = None) -> list[SessionState]:
        with self._lock:
            states = [self._live(sid) for sid in list(self._records)]
            return [replace(s) for s in states if s and (user_id is None or s.user_id == user_id)]

    def _change_live(self, session_id, change) -> SessionState | None:
        with self._lock:
            state = self._live(session_id)
            if state is None or state.ended:
                return None
            return self._put(change(state))

    def attach(self, session_id: str, now: float) -> SessionState | None:
        return self._change_live(session_id, lambda s: replace(
            _with_count(s, s.connection_count + 1, now), status=ACTIVE, last_activity=now))

    def detach(self, session_id: str, now: float) -> SessionState | None:
        return self._change_live(session_id, lambda s: replace(
            _with_count(s, s.connection_count - 1, now), last_activity=now))

    def update(self, session_id: str, **changes) -> SessionState | None:
        changes.pop("connection_count", None)
        return self._change_live(session_id, lambda s: replace(s, **changes))

    def correct_count(self, session_id: str, expected: int, actual: int, now: float) -> bool:
        with self._lock:
            state = self._live(session_id)
            if state is None or state.ended or state.connection_count != expected:
                return False
            self._put(_with_count(state, actual, now))
            return True

    def end(self, session_id: str, reason: str, now: float) -> None:
        with self._lock:
            state = self._live(session_id)
            if state is not None and not state.ended:
                self._put(replace(state, status=ENDED, ended_reason=reason, connection_count=0,
                                  last_activity=now))

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._records.pop(session_id, None)

    def get_setting(self, name: str) -> str | None:
        return self._settings.get(name)

    def set_setting(self, name: str, value: str) -> None:
        self._settings[name] = value

    def lead(self, name: str, holder: str, ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            current = self._leases.get(name)
            if current is None or current[0] == holder or current[1] <= now:
                self._leases[name] = (holder, now + ttl)
                return True
            return False


# Redis: one hash per session, a set of all ids and one per user (so listing a
# user's sessions reads only theirs). Sets are cleaned of expired ids lazily.
_ATTACH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'ended' then return nil end
redis.call('HINCRBY', KEYS[1], 'connection_count', 1)
redis.call('HSET', KEYS[1], 'status', 'active', 'last_activity', ARGV[1], 'disconnected_at', '0')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
_DETACH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'ended' then return nil end
local count = tonumber(redis.call('HGET', KEYS[1], 'connection_count') or '0') - 1
if count <= 0 then
  count = 0
  redis.call('HSET', KEYS[1], 'status', 'disconnected', 'disconnected_at', ARGV[1])
end
redis.call('HSET', KEYS[1], 'connection_count', count, 'last_activity', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
_UPDATE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'ended' then return nil end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""
_CORRECT_COUNT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'ended' then return 0 end
if redis.call('HGET', KEYS[1], 'connection_count') ~= ARGV[1] then return 0 end
local count = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'connection_count', count)
if count == 0 then
  redis.call('HSET', KEYS[1], 'status', 'disconnected', 'disconnected_at', ARGV[3])
else
  if status == 'disconnected' then redis.call('HSET', KEYS[1], 'status', 'active') end
  redis.call('HSET', KEYS[1], 'disconnected_at', '0')
end
return 1
"""
_END = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'ended' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'ended', 'ended_reason', ARGV[1],
           'connection_count', 0, 'last_activity', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class RedisStore(SessionStore):
    """Records in Redis, shared by every worker and instance.

    Calls fail fast (1 s timeouts, one retry, a bounded blocking pool:
    PITFALLS #15) with StoreUnavailable, so a dead Redis costs a request a
    second at most and never hangs a worker.
    """

    def __init__(self, url: str, prefix: str = "termweb:", record_ttl: float = 86400,
                 ended_retention: float = ENDED_RETENTION_SECONDS, max_connections: int = 50,
                 timeout: float = 1.0):
        super().__init__(record_ttl, ended_retention)
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = (redis.RedisError, OSError)
        self.prefix = prefix
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout,
            socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1), decode_responses=True)
        self.redis = redis.Redis(connection_pool=pool)
        self._attach = self.redis.register_script(_ATTACH)
        self._detach = self.redis.register_script(_DETACH)
        self._update = self.redis.register_script(_UPDATE)
        self._correct = self.redis.register_script(_CORRECT_COUNT)
        self._end = self.redis.register_script(_END)
        self._lead = self.redis.register_script(_LEAD)

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def _user_key(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}:sessions"

    @property
    def _all_key(self) -> str:
        return f"{self.prefix}sessions"

    def _ttl(self) -> int:
        return max(1, int(self.record_ttl))

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise StoreUnavailable(f"the session store (Redis) is unavailable: {exc}") from None

    @staticmethod
    def _parse(flat) -> SessionState | None:
        if not flat:
            return None
        if isinstance(flat, dict):
            return SessionState.from_fields(flat)
        return SessionState.from_fields(dict(zip(flat[::2], flat[1::2])))

    def create(self, state: SessionState) -> None:
        def write():
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self._key(state.session_id), mapping=state.to_fields())
            pipe.expire(self._key(state.session_id), self._ttl())
            pipe.sadd(self._all_key, state.session_id)
            pipe.sadd(self._user_key(state.user_id), state.session_id)
            pipe.execute()
        self._call(write)

    def get(self, session_id: str) -> SessionState | None:
        return self._parse(self._call(self.redis.hgetall, self._key(session_id)))

    def list(self, user_id: str | None = None) -> list[SessionState]:
        index = self._all_key if user_id is None else self._user_key(user_id)

        def read():
            ids = sorted(self.redis.smembers(index))
            pipe = self.redis.pipeline(transaction=False)
            for sid in ids:
                pipe.hgetall(self._key(sid))
            return ids, pipe.execute()
        ids, rows = self._call(read)
        states, gone = [], []
        for sid, row in zip(ids, rows):
            state = self._parse(row)
            if state is None:
                gone.append(sid)
            elif user_id is None or state.user_id == user_id:
                states.append(state)
        if gone:  # expired records: drop their ids from the index
            self._call(self.redis.srem, index, *gone)
        return states

    def attach(self, session_id: str, now: float) -> SessionState | None:
        return self._parse(self._call(self._attach, keys=[self._key(session_id)],
                                      args=[repr(now), self._ttl()]))

    def detach(self, session_id: str, now: float) -> SessionState | None:
        return self._parse(self._call(self._detach, keys=[self._key(session_id)],
                                      args=[repr(now), self._ttl()]))

    def update(self, session_id: str, **changes) -> SessionState | None:
        changes.pop("connection_count", None)
        encoded = replace(SessionState("", "", ""), **changes).to_fields()
        args: list = [self._ttl()]
        for name in changes:
            args += [name, encoded[name]]
        return self._parse(self._call(self._update, keys=[self._key(session_id)], args=args))

    def correct_count(self, session_id: str, expected: int, actual: int, now: float) -> bool:
        return bool(self._call(self._correct, keys=[self._key(session_id)],
                               args=[str(expected), str(actual), repr(now)]))

    def end(self, session_id: str, reason: str, now: float) -> None:
        self._call(self._end, keys=[self._key(session_id)],
                   args=[reason, repr(now), max(1, int(self.ended_retention))])

    def delete(self, session_id: str) -> None:
        state = self.get(session_id)

        def remove():
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self._key(session_id))
            pipe.srem(self._all_key, session_id)
            if state is not None:
                pipe.srem(self._user_key(state.user_id), session_id)
            pipe.execute()
        self._call(remove)

    def get_setting(self, name: str) -> str | None:
        return self._call(self.redis.get, f"{self.prefix}setting:{name}")

    def set_setting(self, name: str, value: str) -> None:
        self._call(self.redis.set, f"{self.prefix}setting:{name}", value)

    def lead(self, name: str, holder: str, ttl: float) -> bool:
        return bool(self._call(self._lead, keys=[f"{self.prefix}lease:{name}"],
                               args=[holder, max(1, int(ttl * 1000))]))

    def ping(self) -> None:
        self._call(self.redis.ping)

    def close(self) -> None:
        self.redis.connection_pool.disconnect()


# Records outlive their last write by the session TTL plus this margin: the
# sweep refreshes them long before, so only an abandoned deployment's records
# ever expire.
RECORD_TTL_MARGIN_SECONDS = 86400


def open_store(redis_url: str, prefix: str, session_ttl: float) -> SessionStore:
    """The store the settings ask for: Redis with a URL, else in memory."""
    record_ttl = session_ttl + RECORD_TTL_MARGIN_SECONDS
    if redis_url:
        return RedisStore(redis_url, prefix=prefix, record_ttl=record_ttl)
    return MemoryStore(record_ttl)
