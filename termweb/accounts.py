"""Who may come in: users, API tokens, read-only share links, the first-run login token.

Everything lives in the configured store: Redis when ``TERMWEB_REDIS_URL`` is
set, otherwise a JSON file in the instance folder (mode 0600) that every
worker and the ``termweb`` command share. Passwords are hashed with Argon2id
(argon2-cffi); tokens and share links are 256-bit random secrets kept as
SHA-256 digests, the usual choice for secrets nobody can guess.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

from .sessions import DEFAULT_USER
from .store import RedisStore

USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")  # like a POSIX login name
ROLES = ("user", "admin")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
# The built-in admin: the user of TERMWEB_PASSWORD, of the first-run link,
# and of everyone when login is off.
LOCAL_USER = DEFAULT_USER

TOKEN = re.compile(r"tw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
SHARE = re.compile(r"ts_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")

USERS, TOKENS, SHARES, META = "users", "tokens", "shares", "meta"


class AccountError(ValueError):
    """A request the account store refuses, with a message for the person asking."""


class TokenRefused(LookupError):
    """A presented token is unknown, revoked or expired (`reason` says which)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class User:
    name: str
    role: str = "user"
    password_hash: str = ""
    created: float = 0.0
    # Bumped by a password change: cookies carry it, so old logins end.
    epoch: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass
class ApiToken:
    id: str
    user: str
    label: str = ""
    created: float = 0.0
    expires: float = 0.0  # 0: never
    digest: str = field(default="", repr=False)

    def expired(self, now: float) -> bool:
        return bool(self.expires) and now >= self.expires

    def to_json(self) -> dict:
        return {"id": self.id, "user": self.user, "label": self.label,
                "createdAt": int(self.created * 1000),
                "expiresAt": int(self.expires * 1000) if self.expires else None}


@dataclass
class Share:
    id: str
    session_id: str
    owner: str
    created: float = 0.0
    digest: str = field(default="", repr=False)

    def to_json(self) -> dict:
        return {"id": self.id, "sessionId": self.session_id, "createdAt": int(self.created * 1000)}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- where records live --------------------------------------------------------


class Records(ABC):
    """Small JSON records by kind and key; every write is atomic."""

    @abstractmethod
    def get(self, kind: str, key: str) -> dict | None: ...

    @abstractmethod
    def all(self, kind: str) -> dict[str, dict]: ...

    @abstractmethod
    def put(self, kind: str, key: str, value: dict, only_new: bool = False) -> bool:
        """Write a record; with ``only_new``, only if the key is free. True if written."""

    @abstractmethod
    def delete(self, kind: str, key: str) -> bool: ...


class FileRecords(Records):
    """One JSON file, locked for writes, re-read only when it changed."""

    def __init__(self, directory: str):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, "accounts.json")
        self._lock_path = self.path + ".lock"
        self._seen: tuple | None = None
        self._data: dict = {}

    def _read(self) -> dict:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if signature != self._seen:
            with open(self.path, encoding="utf-8") as f:
                self._data = json.load(f)
            self._seen = signature
        return self._data

    def _modify(self, change) -> bool:
        """Apply ``change`` to the records under the lock. In a gevent worker
        the lock wait and the fsync happen in a thread, off the hub."""
        from gevent import get_hub, monkey

        if monkey.is_module_patched("threading"):
            return get_hub().threadpool.apply(self._write, (change,))
        return self._write(change)

    def _write(self, change) -> bool:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = json.loads(json.dumps(self._read()))  # a private copy
            if not change(data):
                return False
            tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 -- renamed below
                "w", dir=os.path.dirname(self.path), prefix=".accounts-", delete=False,
                encoding="utf-8")
            with tmp:
                os.fchmod(tmp.fileno(), 0o600)
                json.dump(data, tmp, indent=1, sort_keys=True)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp.name, self.path)
            return True
        finally:
            os.close(fd)

    def get(self, kind, key):
        return self._read().get(kind, {}).get(key)

    def all(self, kind):
        return dict(self._read().get(kind, {}))

    def put(self, kind, key, value, only_new=False):
        def change(data):
            records = data.setdefault(kind, {})
            if only_new and key in records:
                return False
            records[key] = value
            return True
        return self._modify(change)

    def delete(self, kind, key):
        return self._modify(lambda data: data.get(kind, {}).pop(key, None) is not None)


class RedisRecords(Records):
    """One Redis hash per kind, on the session store's connection pool."""

    def __init__(self, store: RedisStore):
        self._store = store
        self._redis = store.redis

    def _key(self, kind: str) -> str:
        return f"{self._store.prefix}accounts:{kind}"

    def get(self, kind, key):
        raw = self._store._call(self._redis.hget, self._key(kind), key)
        return json.loads(raw) if raw else None

    def all(self, kind):
        raw = self._store._call(self._redis.hgetall, self._key(kind))
        return {key: json.loads(value) for key, value in raw.items()}

    def put(self, kind, key, value, only_new=False):
        write = self._redis.hsetnx if only_new else self._redis.hset
        written = self._store._call(write, self._key(kind), key, json.dumps(value))
        return bool(written) or not only_new

    def delete(self, kind, key):
        return bool(self._store._call(self._redis.hdel, self._key(kind), key))


# -- passwords -------------------------------------------------------------------


# glibc's mallopt: allocations this large always get their own mapping.
M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 4 * 1024 * 1024


def _return_large_blocks() -> None:
    """Make freed large blocks (a hash's 19 MiB) go back to the system.

    Otherwise glibc raises its mmap threshold after the first hash and keeps
    later ones in the hashing thread's arena: the worker stays 19 MiB
    bigger, and every fork of it (each terminal's tmux client) copies more,
    measured +1.5 ms per new terminal once anyone had logged in.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc
        pass


class Passwords:
    """Argon2id with OWASP's minimum cost (19 MiB, 2 passes): about 25 ms here.

    Under gevent the hash runs in a small thread pool (argon2-cffi releases
    the GIL), so a login never blocks the hub; two at a time bound the memory.
    """

    def __init__(self):
        from argon2 import PasswordHasher

        _return_large_blocks()
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        self._pool = None
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def _run(self, fn, *args):
        from gevent import monkey

        if not monkey.is_module_patched("threading"):
            return fn(*args)
        if self._pool is None:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(2)
        return self._pool.apply(fn, args)

    def hash(self, password: str) -> str:
        return self._run(self._hasher.hash, password)

    def verify(self, digest: str | None, password: str) -> bool:
        """Whether ``password`` matches; a missing user costs the same time."""
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return self._run(self._hasher.verify, digest or self._dummy, password) and bool(digest)
        except (VerificationError, InvalidHashError):
            return False


# -- the accounts ----------------------------------------------------------------


class Accounts:
    """Users, tokens and share links over `Records`.

    ``env_password`` is TERMWEB_PASSWORD: the password of user ``local``
    when no stored user of that name exists.
    """

    def __init__(self, records: Records, env_password: str = ""):
        self.records = records
        self.env_password = env_password
        self.passwords = Passwords()

    # users

    def user(self, name: str) -> User | None:
        """A stored user, or the built-in ``local`` admin while it may log in."""
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            return None
        raw = self.records.get(USERS, name)
        if raw is not None:
            return User(**raw)
        if name == LOCAL_USER and (self.env_password or not self.has_users()):
            return User(LOCAL_USER, "admin")
        return None

    def users(self) -> list[User]:
        return sorted((User(**raw) for raw in self.records.all(USERS).values()), key=lambda u: u.name)

    def has_users(self) -> bool:
        return bool(self.records.all(USERS))

    @staticmethod
    def check_name(name: str) -> str:
        if not USER_NAME.fullmatch(name or ""):
            raise AccountError("user names are 1-32 characters: lower-case letters, digits, "
                               "'_', '-' and '.', starting with a letter or '_'")
        return name

    def add_user(self, name: str, password: str, role: str = "user") -> User:
        self.check_name(name)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        user = User(name, role, self.passwords.hash(_check_password(password)), time.time())
        if not self.records.put(USERS, name, asdict(user), only_new=True):
            raise AccountError(f"user {name} already exists")
        self.records.delete(META, "login-token")  # the first-run link has done its job
        return user

    def set_password(self, name: str, password: str) -> User:
        user = self._stored(name)
        user.password_hash = self.passwords.hash(_check_password(password))
        user.epoch += 1
        self.records.put(USERS, name, asdict(user))
        return user

    def set_role(self, name: str, role: str) -> User:
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        user = self._stored(name)
        user.role, user.epoch = role, user.epoch + 1
        self.records.put(USERS, name, asdict(user))
        return user

    def remove_user(self, name: str) -> None:
        """Remove a user with their API tokens and share links (their tmux
        sessions stay, for an admin to end)."""
        self._stored(name)
        self.records.delete(USERS, name)
        for token in self.tokens(name):
            self.records.delete(TOKENS, token.id)
        for share in self.shares(owner=name):
            self.records.delete(SHARES, share.id)

    def _stored(self, name: str) -> User:
        raw = self.records.get(USERS, name) if USER_NAME.fullmatch(name or "") else None
        if raw is None:
            raise AccountError(f"no user {name}")
        return User(**raw)

    def check_password(self, name: str, password: str) -> User | None:
        """The user if the password is right, else None (in constant-ish time)."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            return None
        user = self.user(name) if isinstance(name, str) else None
        if user is not None and not user.password_hash:  # the built-in local user
            if self.env_password and hmac.compare_digest(_digest(password), _digest(self.env_password)):
                return user
            return None
        return user if self.passwords.verify(user and user.password_hash, password) else None

    # API tokens

    def create_token(self, user: str, label: str = "", expires_in: float = 0) -> tuple[ApiToken, str]:
        if self.user(user) is None:
            raise AccountError(f"no user {user}")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = time.time()
        token = ApiToken(token_id, user, label[:100], now, now + expires_in if expires_in else 0.0,
                         _digest(secret))
        self.records.put(TOKENS, token_id, asdict(token))
        return token, f"tw_{token_id}_{secret}"

    def check_token(self, presented: str) -> User:
        """The user an API token stands for; TokenRefused otherwise."""
        match = TOKEN.fullmatch(presented or "")
        raw = match and self.records.get(TOKENS, match.group(1))
        if not raw or not hmac.compare_digest(raw["digest"], _digest(match.group(2))):
            raise TokenRefused("unknown or revoked token")
        token = ApiToken(**raw)
        if token.expired(time.time()):
            raise TokenRefused("the token has expired")
        user = self.user(token.user)
        if user is None:
            raise TokenRefused("unknown or revoked token")
        return user

    def tokens(self, user: str | None = None) -> list[ApiToken]:
        tokens = [ApiToken(**raw) for raw in self.records.all(TOKENS).values()]
        return sorted((t for t in tokens if user is None or t.user == user), key=lambda t: t.created)

    def revoke_token(self, token_id: str) -> bool:
        return self.records.delete(TOKENS, token_id)

    # read-only share links

    def create_share(self, session_id: str, owner: str) -> tuple[Share, str]:
        share_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        share = Share(share_id, session_id, owner, time.time(), _digest(secret))
        self.records.put(SHARES, share_id, asdict(share))
        return share, f"ts_{share_id}_{secret}"

    def check_share(self, presented: str) -> Share | None:
        match = SHARE.fullmatch(presented or "")
        raw = match and self.records.get(SHARES, match.group(1))
        if not raw or not hmac.compare_digest(raw["digest"], _digest(match.group(2))):
            return None
        return Share(**raw)

    def shares(self, session_id: str | None = None, owner: str | None = None) -> list[Share]:
        shares = [Share(**raw) for raw in self.records.all(SHARES).values()]
        return sorted((s for s in shares if (session_id is None or s.session_id == session_id)
                       and (owner is None or s.owner == owner)), key=lambda s: s.created)

    def share_ids(self) -> set[str]:
        return set(self.records.all(SHARES))

    def revoke_share(self, share_id: str) -> bool:
        return self.records.delete(SHARES, share_id)

    # the first-run login token and the secret key

    def start_first_run(self) -> str | None:
        """With no users and no TERMWEB_PASSWORD, a fresh login token (the
        one printed at start-up, valid until the next start or the first user)."""
        if self.env_password or self.has_users():
            self.records.delete(META, "login-token")
            return None
        secret = secrets.token_urlsafe(32)
        self.records.put(META, "login-token", {"digest": _digest(secret), "created": time.time()})
        return secret

    def check_login_token(self, presented: str) -> User | None:
        raw = self.records.get(META, "login-token") if LOGIN_TOKEN.fullmatch(presented or "") else None
        if not raw or not hmac.compare_digest(raw["digest"], _digest(presented)):
            return None
        return self.user(LOCAL_USER)

    def login_token_exists(self) -> bool:
        return self.records.get(META, "login-token") is not None

    def secret_key(self) -> str:
        """The key that signs login cookies, made once and shared by every worker."""
        self.records.put(META, "secret-key", {"key": secrets.token_urlsafe(48)}, only_new=True)
        return self.records.get(META, "secret-key")["key"]


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"passwords are {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


def open_accounts(settings, store=None) -> Accounts:
    """The accounts beside the session store: Redis's, or the instance folder's file."""
    if isinstance(store, RedisStore):
        return Accounts(RedisRecords(store), settings.password)
    return Accounts(FileRecords(settings.instance_dir), settings.password)
