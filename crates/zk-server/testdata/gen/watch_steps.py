import random, sys
random.seed(int(sys.argv[1]))
N = int(sys.argv[2])
# "mixed": any session sets any kind of watch (so one session holds several modes on one
# path over time) and checkWatches / removeWatches (types 1-3) are replayed too.
MIXED = len(sys.argv) > 3 and sys.argv[3] == "mixed"
paths = ["/a", "/a/b", "/a/b/c", "/a/c", "/b", "/b/x"]
wpaths = paths + ["/"]
# Otherwise each session keeps one kind of watch, so that no session holds two modes on
# one path (ZooKeeper 3.8.0 keeps a single mode per watcher and path; 3.9 keeps a set).
STD = [1, 2, 3, 4] if MIXED else [1, 4]
out = []
for run in range(N):
    exists = {"/"}
    ops = ["reset"]
    for _ in range(random.randint(5, 40)):
        p = random.choice(paths)
        parent = p.rsplit("/", 1)[0] or "/"
        s = random.choice(STD)
        wp = random.choice(wpaths)
        r = random.random()
        if r < 0.18:
            if parent in exists and p not in exists:
                ops.append(f"create {p}"); exists.add(p)
        elif r < 0.30:
            if p in exists and not any(q.startswith(p + "/") for q in exists):
                ops.append(f"delete {p}"); exists.discard(p)
        elif r < 0.42:
            if p in exists:
                ops.append(f"set {p}")
        elif r < 0.52:
            if wp in exists: ops.append(f"getdata {s} {wp}")
        elif r < 0.60:
            ops.append(f"exists {s} {wp}")
        elif r < 0.70:
            if wp in exists: ops.append(f"getchildren {s} {wp}")
        elif r < 0.82:
            m = random.randint(0, 1)
            ops.append(f"addwatch {random.randint(1, 4) if MIXED else 2 + m} {wp} {m}")
        elif r < 0.88:
            ops.append(f"close {random.randint(1, 4)}")
        elif MIXED and r < 0.94:
            op = random.choice(["check", "remove"])
            ops.append(f"{op} {random.randint(1, 4)} {wp} {random.randint(1, 3)}")
        else:
            s = random.randint(1, 4)
            lists = []
            for kind in "decpr":
                allowed = MIXED or (kind in "dec" and s in STD) or (kind == "p" and s == 2) or (kind == "r" and s == 3)
                k = random.randint(0, 2) if allowed else 0
                lists.append(kind + ":" + ",".join(random.sample(wpaths, k)))
            ops.append(f"setwatches {s} {random.randint(0, 30)} " + ";".join(lists))
    out.extend(ops)
print("\n".join(out))
