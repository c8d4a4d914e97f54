"""The accounts contract, run against both homes: the instance folder's file
and a real redis-server the test session started on a free port."""
from __future__ import annotations

import multiprocessing

import pytest

from termweb.accounts import (AccountError, Accounts, FileRecords, RedisRecords, TokenRefused)
from termweb.store import RedisStore

from .helpers import wait_until
from .test_spawn import run_patched


@pytest.fixture(params=["file", "redis"])
def make_accounts(request, tmp_path, redis_server, redis_prefix):
    """``make_accounts(env_password="")``: two calls share one home, as two workers do."""
    stores = []

    def make(env_password: str = "") -> Accounts:
        if request.param == "file":
            return Accounts(FileRecords(str(tmp_path / "instance")), env_password)
        stores.append(RedisStore(redis_server.url, prefix=redis_prefix))
        return Accounts(RedisRecords(stores[-1]), env_password)

    yield make
    for store in stores:
        store.close()


def test_users_passwords_and_roles(make_accounts):
    accounts, other_worker = make_accounts(), make_accounts()
    accounts.add_user("alice", "alice-pass-1234")
    with pytest.raises(AccountError, match="already exists"):
        other_worker.add_user("alice", "another-pass-1")
    for name, password in (("Alice", "alice-pass-1234"), ("bob", "short")):
        with pytest.raises(AccountError):
            accounts.add_user(name, password)
    assert other_worker.check_password("alice", "alice-pass-1234").name == "alice"
    for name, password in (("alice", "wrong-pass-1234"), ("nobody", "alice-pass-1234"),
                           ("alice", "x" * 2000), ("../alice", "alice-pass-1234")):
        assert other_worker.check_password(name, password) is None

    before = accounts.user("alice").epoch
    other_worker.set_password("alice", "alice-pass-5678")
    assert accounts.user("alice").epoch == before + 1
    assert accounts.check_password("alice", "alice-pass-1234") is None
    assert accounts.set_role("alice", "admin").is_admin
    assert [(u.name, u.role) for u in accounts.users()] == [("alice", "admin")]
    accounts.remove_user("alice")
    assert other_worker.user("alice") is None


def test_the_built_in_user(make_accounts):
    accounts = make_accounts()
    assert accounts.user("local").is_admin  # no users yet: the first-run link's user
    link = accounts.start_first_run()
    assert make_accounts().check_login_token(link).name == "local"
    assert accounts.check_login_token(link[:-1] + ("A" if link[-1] != "A" else "B")) is None
    accounts.add_user("carol", "carol-pass-1234")
    assert accounts.check_login_token(link) is None and accounts.user("local") is None
    with_password = make_accounts(env_password="env-pass-5678")
    assert with_password.start_first_run() is None
    assert with_password.check_password("local", "env-pass-5678").is_admin
    assert with_password.check_password("local", "env-pass-0000") is None


def test_api_tokens(make_accounts):
    accounts = make_accounts()
    accounts.add_user("alice", "alice-pass-1234")
    token, secret = accounts.create_token("alice", "ci")
    assert make_accounts().check_token(secret).name == "alice"
    assert secret not in str(accounts.tokens())  # kept as a digest only
    for forged in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), "tw_" + "0" * 16 + "_" + "A" * 43,
                   "", "Bearer " + secret):
        with pytest.raises(TokenRefused, match="unknown or revoked"):
            accounts.check_token(forged)
    _, short = accounts.create_token("alice", expires_in=0.2)
    wait_until(lambda: short_token_refused(accounts, short), timeout=5,
               message="the 0.2 s token never expired")
    with pytest.raises(TokenRefused, match="expired"):
        accounts.check_token(short)
    assert accounts.revoke_token(token.id)
    with pytest.raises(TokenRefused):
        accounts.check_token(secret)
    with pytest.raises(AccountError):
        accounts.create_token("nobody")


def short_token_refused(accounts, token: str) -> bool:
    try:
        accounts.check_token(token)
    except TokenRefused:
        return True
    return False


def test_share_links(make_accounts):
    accounts = make_accounts()
    share, secret = accounts.create_share("session-1", "alice")
    assert make_accounts().check_share(secret) == share
    assert accounts.check_share(secret.replace("ts_", "tw_")) is None
    assert [s.id for s in accounts.shares("session-1")] == [share.id] == list(accounts.share_ids())
    accounts.revoke_share(share.id)
    assert accounts.check_share(secret) is None


def test_the_cookie_key_is_made_once_and_shared(make_accounts):
    assert make_accounts().secret_key() == make_accounts().secret_key()


def _add(directory: str, name: str) -> None:
    Accounts(FileRecords(directory)).add_user(name, name + "-pass-1234")


def test_the_file_takes_writers_from_several_processes(tmp_path):
    """The CLI and every worker write one file: none of their writes is lost."""
    directory = str(tmp_path / "instance")
    names = [f"user{i}" for i in range(8)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.starmap(_add, [(directory, name) for name in names])
    assert [u.name for u in Accounts(FileRecords(directory)).users()] == names


def test_hashing_leaves_the_hub_free_and_the_memory_returned(tmp_path):
    """Argon2 runs in a thread pool under gevent: other greenlets go on meanwhile."""
    result = run_patched("""
        import json, time, gevent
        from termweb.accounts import Passwords
        def rss_kb():
            with open("/proc/self/status") as status:
                return next(int(l.split()[1]) for l in status if l.startswith("VmRSS"))
        passwords = Passwords()
        rss_before = rss_kb()
        one = time.monotonic()
        passwords._hasher.hash("alone")  # on the hub, as a blocking call would run
        one = time.monotonic() - one
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(time.monotonic()) or gevent.sleep(0.005)
                                       for _ in range(10000)])
        gevent.sleep(0)
        started = time.monotonic()
        hashing = [gevent.spawn(passwords.hash, "pass-%d" % i) for i in range(6)]
        gevent.joinall(hashing)
        took = time.monotonic() - started
        ok = all(passwords.verify(g.value, "pass-%d" % i) for i, g in enumerate(hashing))
        longest = max([b - a for a, b in zip(ticks, ticks[1:]) if a >= started], default=took)
        print(json.dumps({"one": one, "took": took, "longest_gap": longest, "ok": ok,
                          "grew_kb": rss_kb() - rss_before}))
    """, tmp_path)
    assert result["ok"]
    # The ticker never waited as long as one hash takes.
    assert result["longest_gap"] < result["one"] * 0.6, result
    # Nor does the worker keep the hashes' 19 MiB (each fork would copy it).
    assert result["grew_kb"] < 8 * 1024, result
