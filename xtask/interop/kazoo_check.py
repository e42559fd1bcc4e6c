"""Drives a ZooKeeper ensemble through kazoo: ops, watches, ephemerals, sequential nodes,
transactions, ACLs and kazoo's Lock and Election recipes. Each check prints one line;
the exit status is the number of failed checks.

usage: kazoo_check.py HOST:PORT[,HOST:PORT...]
"""
import sys
import threading
import time
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import (BadVersionError, NoAuthError, NodeExistsError,
                              NoNodeError, NotEmptyError)
from kazoo.security import make_digest_acl

HOSTS = sys.argv[1]
ROOT = "/interop-" + uuid.uuid4().hex[:8]
failures = 0
passes = 0


def check(name, cond, detail=""):
    global failures, passes
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else "  " + str(detail)))
    if cond:
        passes += 1
    else:
        failures += 1


def client(hosts=HOSTS, **kw):
    zk = KazooClient(hosts=hosts, timeout=10, **kw)
    zk.start(timeout=15)
    return zk


def wait_for(pred, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


zk = client()
zk.ensure_path(ROOT)

# Plain ops and Stat.
zk.create(ROOT + "/a", b"v1")
data, stat = zk.get(ROOT + "/a")
check("create+get", data == b"v1" and stat.version == 0 and stat.dataLength == 2, (data, stat))
zk.set(ROOT + "/a", b"v2")
data, stat = zk.get(ROOT + "/a")
check("set bumps version", data == b"v2" and stat.version == 1, stat)
try:
    zk.set(ROOT + "/a", b"v3", version=0)
    check("set with a stale version fails", False)
except BadVersionError:
    check("set with a stale version fails", True)
try:
    zk.create(ROOT + "/a", b"")
    check("create of an existing node fails", False)
except NodeExistsError:
    check("create of an existing node fails", True)
try:
    zk.get(ROOT + "/missing")
    check("get of a missing node fails", False)
except NoNodeError:
    check("get of a missing node fails", True)
zk.create(ROOT + "/p/c", b"", makepath=True)
try:
    zk.delete(ROOT + "/p")
    check("delete of a parent fails", False)
except NotEmptyError:
    check("delete of a parent fails", True)
parent = zk.exists(ROOT + "/p")
check("parent stat counts its child", parent is not None and parent.numChildren == 1, parent)

# Sequential nodes.
names = [zk.create(ROOT + "/q/n-", b"", sequence=True, makepath=True) for _ in range(3)]
check("sequential names", [n.rsplit("-", 1)[1] for n in names] == ["0000000000", "0000000001", "0000000002"], names)

# Watches: data, child, exists.
events = []
zk.get(ROOT + "/a", watch=lambda e: events.append(("data", e.type, e.path)))
zk.get_children(ROOT + "/q", watch=lambda e: events.append(("child", e.type, e.path)))
zk.exists(ROOT + "/later", watch=lambda e: events.append(("exists", e.type, e.path)))
other = client()
other.set(ROOT + "/a", b"v3")
other.create(ROOT + "/q/x", b"")
other.create(ROOT + "/later", b"")
ok = wait_for(lambda: len(events) >= 3)
check("watch events fire once each", ok and sorted(events) == sorted([
    ("data", "CHANGED", ROOT + "/a"),
    ("child", "CHILD", ROOT + "/q"),
    ("exists", "CREATED", ROOT + "/later"),
]), events)

# A write through one session is visible to another after sync.
other.set(ROOT + "/a", b"v4")
zk.sync(ROOT + "/a")
check("sync then read sees the other session's write", zk.get(ROOT + "/a")[0] == b"v4")

# Ephemerals vanish when their session closes.
eph = client()
eph.create(ROOT + "/eph", b"", ephemeral=True)
check("ephemeral exists", zk.exists(ROOT + "/eph") is not None)
eph.stop()
eph.close()
check("ephemeral removed on close", wait_for(lambda: zk.exists(ROOT + "/eph") is None))

# Transactions: all or nothing.
t = zk.transaction()
t.create(ROOT + "/t1", b"")
t.check(ROOT + "/a", 99)
results = t.commit()
check("failed transaction rolls back", zk.exists(ROOT + "/t1") is None and isinstance(results[1], BadVersionError), results)
t = zk.transaction()
t.create(ROOT + "/t2", b"")
t.set_data(ROOT + "/a", b"v5")
results = t.commit()
check("transaction commits", zk.exists(ROOT + "/t2") is not None and zk.get(ROOT + "/a")[0] == b"v5", results)

# Digest ACL.
acl = make_digest_acl("user", "secret", all=True)
zk.create(ROOT + "/secure", b"s", acl=[acl])
stranger = client()
try:
    stranger.get(ROOT + "/secure")
    check("ACL refuses a stranger", False)
except NoAuthError:
    check("ACL refuses a stranger", True)
friend = client(auth_data=[("digest", "user:secret")])
check("ACL admits the digest user", friend.get(ROOT + "/secure")[0] == b"s")
friend.delete(ROOT + "/secure")
for c in (stranger, friend):
    c.stop()
    c.close()

# kazoo's Lock recipe: only one holder at a time.
holders = []
inside = []
overlaps = []
lock_errors = []


def contender(i):
    try:
        c = client()
        lock = c.Lock(ROOT + "/lock", "c%d" % i)
        for _ in range(3):
            with lock:
                inside.append(i)
                if len(inside) > 1:
                    overlaps.append(list(inside))
                holders.append(i)
                time.sleep(0.01)
                inside.remove(i)
        c.stop()
        c.close()
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        lock_errors.append(repr(e))


threads = [threading.Thread(target=contender, args=(i,)) for i in range(3)]
for th in threads:
    th.start()
for th in threads:
    th.join(60)
check("Lock recipe: every contender got the lock", len(holders) == 9 and not lock_errors, (holders, lock_errors))
check("Lock recipe: never two holders at once", not overlaps, overlaps)

# kazoo's Election recipe: exactly one leader runs.
leaders = []
e1, e2 = client(), client()
ev = threading.Event()


def lead(name):
    leaders.append(name)
    ev.wait(2)


ta = threading.Thread(target=lambda: e1.Election(ROOT + "/election", "e1").run(lead, "e1"))
tb = threading.Thread(target=lambda: e2.Election(ROOT + "/election", "e2").run(lead, "e2"))
ta.start()
tb.start()
time.sleep(1)
check("Election recipe: one leader at a time", len(leaders) == 1, leaders)
ev.set()
ta.join(30)
tb.join(30)
check("Election recipe: the other contender leads next", sorted(leaders) == ["e1", "e2"], leaders)
for c in (e1, e2, other):
    c.stop()
    c.close()

zk.delete(ROOT, recursive=True)
check("recursive delete", zk.exists(ROOT) is None)
zk.stop()
zk.close()
print("kazoo: %d passed, %d failed" % (passes, failures))
sys.exit(min(failures, 100))
