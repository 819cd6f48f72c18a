"""nemesis: faults scheduled at random (seeded) through the run, each
recorded in the history as a :nemesis :info op pair (start, stop), and all
healed at the end.

  partition   random halves | isolated leader | majority ring | bridge
  kill        kill -9 of one | a minority | the leader | all, then restart
  pause       SIGSTOP of one | a minority | the leader, then SIGCONT
  clock       restart a node under libfaketime (CLOCK_REALTIME only) with a
              jump, a drift or a strobing offset; healed by a clean restart
  membership  RemoveMember, stop, wipe the data dir; then start with --join
              and AddMember
"""

import os
import threading
import time

from . import client as C
from .db import DbError, faketime_lib
from .wire import cluster_pb2

ALL = ("partition", "kill", "pause", "clock", "membership")
KILL_MODES = ("one", "minority", "leader", "all")
# Random gap before a fault and how long it is held (seconds).
GAP_S = (3.0, 8.0)
HOLD_S = (4.0, 12.0)
# Strobe: offset flips between two values this often.
STROBE_PERIOD_S = 0.5
# Clock offsets in seconds.  Certificates are backdated by an hour
# (DEVCERTS_BACKDATE_SECS) so small negative offsets stay valid.
JUMP_S = (-600, 86400)
# A membership change (remove or add) bound, including raft's catch-up.
MEMBERSHIP_TIMEOUT_S = 30.0
# Restarting nodes after a fault: bounded by db.NODE_START_TIMEOUT_S each.


class Nemesis:
    def __init__(self, db, net, rec, rng, kinds, log):
        self.db, self.net, self.rec, self.rng = db, net, rec, rng
        # "kind" or "kind:mode" (kill:all, kill:leader, ...: that mode only)
        self.modes = {k.split(":", 1)[0]: k.split(":", 1)[1] for k in kinds if ":" in k}
        self.kinds = sorted({k.split(":", 1)[0] for k in kinds})
        self.log = log
        self.active = None           # (kind, state) while a fault is held
        self.windows = []            # [(kind, start ns, stop ns, desc)]
        self.stop_ev = threading.Event()
        self.errors = []
        self._strobe = None

    # -- schedule --
    def run(self, until):
        """Loop until monotonic time `until` (bounded: each fault is held for
        at most HOLD_S and healed before the next)."""
        while not self.stop_ev.is_set() and time.monotonic() < until:
            gap = self.rng.uniform(*GAP_S)
            if self.stop_ev.wait(min(gap, max(0.0, until - time.monotonic()))):
                break
            if time.monotonic() >= until - 1.0:
                break
            kind = self.rng.choice(self.kinds)
            try:
                self.start(kind)
            except Exception as ex:  # noqa: BLE001 - recorded, then healed
                self.errors.append("start %s: %r" % (kind, ex))
                self.log("nemesis: start %s failed: %r" % (kind, ex))
            hold = self.rng.uniform(*HOLD_S)
            self.stop_ev.wait(min(hold, max(0.0, until - time.monotonic())))
            try:
                self.stop()
            except Exception as ex:  # noqa: BLE001
                self.errors.append("stop %s: %r" % (kind, ex))
                self.log("nemesis: stop %s failed: %r" % (kind, ex))

    def _op(self, typ, f, value):
        return self.rec.add("nemesis", "info", f, value, phase=typ)

    def _pick(self, mode):
        ids = sorted(self.db.members)
        lid = self.db.leader()
        if mode == "leader":
            return [lid] if lid else [self.rng.choice(ids)]
        if mode == "one":
            return [self.rng.choice(ids)]
        if mode == "minority":
            return self.rng.sample(ids, max(1, (len(ids) - 1) // 2))
        return ids

    # -- faults --
    def start(self, kind):
        if self.active:
            self.stop()
        t0 = self.rec.now()
        desc = getattr(self, "_start_" + kind)()
        self._op("start", "start-" + kind, desc)
        self.log("nemesis: start %s %s" % (kind, desc))
        self.active = (kind, desc, t0)

    def stop(self):
        if not self.active:
            return
        kind, desc, t0 = self.active
        try:
            getattr(self, "_stop_" + kind)(desc)
        finally:
            self.active = None
            t1 = self.rec.now()
            self.windows.append((kind, t0, t1, desc))
            self._op("stop", "stop-" + kind, desc)
            self.log("nemesis: stop %s" % kind)

    # partition
    def _start_partition(self):
        ids = sorted(self.db.members)
        mode = self.rng.choice(["halves", "isolated-leader", "majority-ring", "bridge"])
        grudge = {i: set() for i in ids}

        def cut(a, b):
            grudge[a].add(b)
            grudge[b].add(a)
        if mode == "halves":
            s = ids[:]
            self.rng.shuffle(s)
            a, b = s[:len(s) // 2], s[len(s) // 2:]
            for x in a:
                for y in b:
                    cut(x, y)
            comp = [sorted(a), sorted(b)]
        elif mode == "isolated-leader":
            lid = self.db.leader() or self.rng.choice(ids)
            for y in ids:
                if y != lid:
                    cut(lid, y)
            comp = [[lid], [y for y in ids if y != lid]]
        elif mode == "majority-ring":
            s = ids[:]
            self.rng.shuffle(s)
            n = len(s)
            for k, x in enumerate(s):
                near = {s[(k + d) % n] for d in (-1, 0, 1)}
                for y in s:
                    if y not in near:
                        cut(x, y)
            comp = [s]
        else:  # bridge
            s = ids[:]
            self.rng.shuffle(s)
            mid = len(s) // 2
            a, bridge, b = s[:mid], s[mid], s[mid + 1:]
            for x in a:
                for y in b:
                    cut(x, y)
            comp = [sorted(a), [bridge], sorted(b)]
        self.net.partition(grudge)
        return {"mode": mode, "groups": comp}

    def _stop_partition(self, desc):
        self.net.heal()

    # kill
    def _start_kill(self):
        mode = self.modes.get("kill") or self.rng.choice(KILL_MODES)
        ids = self._pick(mode)
        for i in ids:
            self.db.nodes[i].kill9()
        return {"mode": mode, "nodes": ids}

    def _stop_kill(self, desc):
        for i in desc["nodes"]:
            self.db.nodes[i].start(join=self.db.nodes[i].joined)
        for i in desc["nodes"]:
            self.db.nodes[i].wait_up()

    # pause
    def _start_pause(self):
        mode = self.rng.choice(["one", "minority", "leader"])
        ids = self._pick(mode)
        for i in ids:
            self.db.nodes[i].pause()
        return {"mode": mode, "nodes": ids}

    def _stop_pause(self, desc):
        for i in desc["nodes"]:
            self.db.nodes[i].cont()

    # clock
    def _start_clock(self):
        if not faketime_lib():
            raise DbError("libfaketime not installed (apt-get install faketime)")
        mode = self.rng.choice(["jump", "drift", "strobe"])
        ids = self._pick(self.rng.choice(["one", "minority", "leader"]))
        offs = {}
        for i in ids:
            nd = self.db.nodes[i]
            path = os.path.join(self.db.dir, "faketime-n%d" % i)
            if mode == "jump":
                spec = "%+ds" % self.rng.randint(*JUMP_S)
            elif mode == "drift":
                spec = "+0 x%.2f" % self.rng.choice([0.5, 0.9, 1.1, 2.0, 5.0])
            else:
                spec = "+0s"
            with open(path, "w") as f:
                f.write(spec + "\n")
            offs[i] = spec
            nd.kill9()
            nd.start(join=nd.joined, faketime_file=path)
        for i in ids:
            self.db.nodes[i].wait_up()
        if mode == "strobe":
            delta = self.rng.randint(5, 600)
            self._strobe = threading.Event()
            threading.Thread(target=self._strobe_loop, args=(ids, delta, self._strobe),
                             daemon=True, name="strobe").start()
            offs = {i: "strobe 0/+%ds every %.1fs" % (delta, STROBE_PERIOD_S) for i in ids}
        return {"mode": mode, "nodes": ids, "offsets": {str(k): v for k, v in offs.items()}}

    def _strobe_loop(self, ids, delta, stop):
        flip = False
        for _ in range(100000):          # bounded; stopped by the event
            if stop.wait(STROBE_PERIOD_S):
                return
            flip = not flip
            for i in ids:
                tmp = os.path.join(self.db.dir, "faketime-n%d.tmp" % i)
                with open(tmp, "w") as f:
                    f.write("%+ds\n" % (delta if flip else 0))
                os.replace(tmp, os.path.join(self.db.dir, "faketime-n%d" % i))

    def _stop_clock(self, desc):
        if self._strobe is not None:
            self._strobe.set()
            self._strobe = None
        for i in desc["nodes"]:
            nd = self.db.nodes[i]
            nd.stop()
            nd.start(join=nd.joined)
        for i in desc["nodes"]:
            self.db.nodes[i].wait_up()

    # membership
    def _leader_call(self, method, req):
        cl = C.Client(self.db, self.rng)
        deadline = time.monotonic() + MEMBERSHIP_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            o = cl.call(method, req, timeout=MEMBERSHIP_TIMEOUT_S / 2,
                        deadline_s=MEMBERSHIP_TIMEOUT_S / 2)
            if o.type == "ok":
                return o
            last = o
            # Busy with another change, or no leader: retry, bounded.
            time.sleep(0.5)
        raise DbError("%s failed: %r" % (method, last))

    def _start_membership(self):
        ids = sorted(self.db.members)
        lid = self.db.leader()
        cands = [i for i in ids if i != lid] or ids
        victim = self.rng.choice(cands)
        self._leader_call("RemoveMember", cluster_pb2.RemoveMemberRequest(id=victim))
        self.db.members.discard(victim)
        nd = self.db.nodes[victim]
        nd.stop()
        nd.wipe()
        return {"removed": victim}

    def _stop_membership(self, desc):
        victim = desc["removed"]
        nd = self.db.nodes[victim]
        if not nd.running():
            nd.wipe()
            nd.start(join=True)
            nd.wait_up()
        try:
            self._leader_call("AddMember", cluster_pb2.AddMemberRequest(
                id=victim, peer_address=nd.peer, client_address=nd.client))
        except DbError as ex:
            # An earlier attempt that timed out may have added and promoted
            # it: then a retry is ALREADY_EXISTS, and the node is a voter.
            # (One that added it without the promotion is finished by the
            # retry itself: wardend promotes an existing spare.)
            if "already-exists" not in str(ex) or not self._is_voter(victim):
                raise
        self.db.members.add(victim)

    def _is_voter(self, nid):
        for st in self.db.statuses().values():
            if isinstance(st, Exception) or st.state != "leader":
                continue
            return any(m.id == nid and m.role == cluster_pb2.MEMBER_ROLE_VOTER
                       for m in st.members)
        return False

    # -- final heal --
    def heal_all(self):
        """Undo everything: stop the held fault, flush partitions, SIGCONT,
        restart dead members, and re-add a removed node."""
        errs = []
        try:
            self.stop()
        except Exception as ex:  # noqa: BLE001
            errs.append(repr(ex))
        self.net.heal()
        for nd in self.db.nodes.values():
            nd.cont()
        for i in sorted(self.db.members):
            nd = self.db.nodes[i]
            if not nd.running():
                nd.start(join=nd.joined)
                nd.wait_up()
        self.rec.add("nemesis", "info", "heal-all", errs or None, phase="stop")
        return errs
