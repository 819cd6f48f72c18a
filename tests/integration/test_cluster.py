"""Raft cluster: real `wardend` processes on loopback, each node on its own
127.0.0.x address, peers over mutual TLS (issue 3 acceptance).

  ReplicationTest   a 3-node cluster elects a leader; writes sent to any
                    node (leader following) are readable from every node;
                    idempotency-key retry returns the first result, another
                    key gets ALREADY_EXISTS; peers without a valid
                    certificate are refused at the Raft port and the
                    cluster keeps working
  KillLeaderTest    kill -9 the leader: a new leader serves writes; the old
                    one restarts, rejoins and catches up
  CrashAllTest      kill -9 all three mid write stream, restart: every
                    acknowledged write is present, none applied twice
                    (distinct ids, unique created_index, idempotent retries
                    return the first result), applied indexes equal
  SnapshotTest      a node down while the log is compacted past it catches
                    up by snapshot install
  MembershipTest    add a 4th node (--join + AddMember), remove one,
                    transfer leadership to a named node

Rerun a failure with the printed seed: WARDEN_TEST_SEED=<seed>
WARDEN_KEEP_TMP=1.
"""

import os
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as ct  # noqa: E402
import wardentest as wt  # noqa: E402
from cluster import SC, cluster_pb2, grpc, inv_pb2  # noqa: E402

# ---- limits -------------------------------------------------------------------
# Writes per phase in the basic tests.
N_BASIC = 6
# Crash test: writer threads, per-thread bound on attempts, acks to wait for
# before the crash (bounded by CRASH_WAIT_S), per-call deadline of a writer
# (short: during the outage we want an ambiguous outcome, not a 30 s retry).
CRASH_WRITERS = 4
CRASH_PER_WRITER_MAX = 2000
CRASH_ACKS_BEFORE = 60
CRASH_WAIT_S = 30.0
CRASH_CALL_DEADLINE_S = 3.0
# Acknowledged writes re-sent with their idempotency key after the restart.
CRASH_REPLAY_SAMPLE = 25
# Snapshot test: lowered threshold/trailing when wardend has the flags;
# otherwise the defaults (docs/consensus.md, consensus/node.h) apply.
SNAP_THRESHOLD = 64
SNAP_TRAILING = 16
DEFAULT_SNAP_THRESHOLD = 65536
DEFAULT_SNAP_TRAILING = 8192
# Entries written while the node is down: bounded; the loop stops as soon
# as the leader's log no longer holds the stopped node's next entry.
SNAP_WRITERS = 8
SNAP_WRITES_MAX = 4000
SNAP_WRITE_S = 90.0
# TLS probe of the Raft port: connect/handshake/read bound.
TLS_PROBE_S = 5.0
# A refused peer's alert/EOF must come within this; the accepted control
# must see no alert within TLS_ACCEPT_QUIET_S.
TLS_ACCEPT_QUIET_S = 1.0
# Membership: promotion of the joiner to voter, and a transfer settling.
MEMBER_TIMEOUT_S = 30.0


def dev_id(prefix):
    return ct.wt.uid(prefix)


def enroll(c, device_id, idem=None, node=None, role="admin", **kw):
    return c.call(ct.ENROLL, ct.enroll_req(device_id, idem=idem), role=role, node=node, **kw)


def device_key(d):
    """What must be identical on every node for one device."""
    return (d.device_id, d.created_index, d.updated_index, d.key_fingerprint,
            d.gateway_id, d.firmware_version, d.state, d.enrolled_by)


def snapshot_args():
    if ct.has_flag("--snapshot-threshold") and ct.has_flag("--snapshot-trailing"):
        return (["--snapshot-threshold", str(SNAP_THRESHOLD),
                 "--snapshot-trailing", str(SNAP_TRAILING)], SNAP_THRESHOLD, SNAP_TRAILING)
    return ([], DEFAULT_SNAP_THRESHOLD, DEFAULT_SNAP_TRAILING)


class ClusterBase(ct.TestCase):
    """One fresh cluster per test class; torn down (SIGTERM, then SIGKILL)
    at the end."""
    N = 3
    N_MAX = None
    EXTRA = ()
    c = None

    @classmethod
    def setUpClass(cls):
        cls.c = ct.Cluster(n=cls.N, n_max=cls.N_MAX, extra_args=cls.EXTRA,
                           name=cls.__name__)
        try:
            cls.c.start()
            cls.c.wait_leader()
        except BaseException:
            cls.c.dump()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.c is not None:
            cls.c.close()

    def assert_everywhere(self, ids, nodes=None):
        """Each id readable (serializable, local state) on every node, with
        identical content; returns {id: device} from the first node."""
        nodes = nodes or self.c.running()
        ref = {}
        for nd in nodes:
            for i in ids:
                try:
                    d = nd.get_serializable(i).device
                except grpc.RpcError as ex:
                    self.fail("n%d: serializable GetDevice(%s) -> %s %s"
                              % (nd.id, i, ex.code(), ex.details()))
                if i in ref:
                    self.assertEqual(device_key(d), device_key(ref[i]),
                                     "n%d disagrees on %s" % (nd.id, i))
                else:
                    ref[i] = d
        return ref


class ReplicationTest(ClusterBase):

    def test_1_writes_via_any_node_readable_everywhere(self):
        ids = []
        # Each write is sent to a different node first; followers redirect.
        for k in range(N_BASIC):
            nd = self.c.node(1 + k % self.N)
            i = dev_id("rep")
            r = enroll(self.c, i, node=nd)
            self.assertEqual(r.device.device_id, i)
            self.assertGreater(r.device.created_index, 0)
            ids.append(i)
        st = self.c.wait_converged()
        self.assertEqual(len({s.applied_index for s in st.values()}), 1, st)
        self.assert_everywhere(ids)
        # A linearizable read sent to a follower succeeds through the same
        # leader-following client.
        leader = self.c.wait_leader()
        fol = next(n for n in self.c.running() if n.id != leader.id)
        r = self.c.call(ct.GET, inv_pb2.GetDeviceRequest(device_id=ids[0]), node=fol)
        self.assertEqual(r.device.device_id, ids[0])

    def test_2_follower_redirect_carries_leader_hint(self):
        """A follower answers a write with UNAVAILABLE + warden-leader /
        warden-leader-id naming the real leader (unless it forwards, which
        the spec also allows: then the write simply succeeds)."""
        leader = self.c.wait_leader()
        fol = next(n for n in self.c.running() if n.id != leader.id)
        i = dev_id("hint")
        try:
            r = wt.stub(fol.channel("admin"), ct.ENROLL)(ct.enroll_req(i), timeout=ct.RPC_TIMEOUT_S)
            self.assertEqual(r.device.device_id, i)  # forwarded
            return
        except grpc.RpcError as ex:
            self.assertEqual(ex.code(), SC.UNAVAILABLE, ex.details())
            self.assertEqual(ct.trailer(ex, "warden-leader"), leader.client)
            self.assertEqual(ct.trailer(ex, "warden-leader-id"), str(leader.id))
        # Nothing happened on the follower's say-so.
        self.assertRpcError(SC.NOT_FOUND, leader.get_serializable, i)

    def test_3_idempotency_key_returns_first_result(self):
        i = dev_id("idem")
        key = "k-" + i
        r1 = enroll(self.c, i, idem=key)
        # Retry the identical request with the same key via another node.
        leader = self.c.wait_leader()
        fol = next(n for n in self.c.running() if n.id != leader.id)
        r2 = enroll(self.c, i, idem=key, node=fol)
        self.assertEqual(r2.device.device_id, i)
        self.assertEqual(r2.device.created_index, r1.device.created_index,
                         "retry with the same key must return the first result")
        self.assertEqual(r2, r1)
        # A different key is a new request: the device already exists.
        self.assertRpcError(SC.ALREADY_EXISTS, enroll, self.c, i, idem=key + "-other")
        # No key at all: likewise.
        self.assertRpcError(SC.ALREADY_EXISTS, enroll, self.c, i)
        # The same key from another principal (operator may enroll) is not
        # that principal's retry.
        self.assertRpcError(SC.ALREADY_EXISTS, enroll, self.c, i, idem=key, role="operator")
        # And the first result is still what the same principal gets back.
        r3 = enroll(self.c, i, idem=key)
        self.assertEqual(r3.device.created_index, r1.device.created_index)
        self.c.wait_converged()
        self.assert_everywhere([i])

    # -- peer TLS --
    def _probe_raft_port(self, nd, cert=None, key=None, verify_server=False, claim_id=2):
        """TLS to nd's Raft port with Python's ssl. Returns ('refused', why)
        when the handshake fails or the server's alert/EOF follows it
        (TLS 1.3: the server checks the client cert after the client's
        Finished); ('open', why) when the connection stays up."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if verify_server:
            ctx.load_verify_locations(self.c.ca_path())
        else:
            # The verdict must be about *our* certificate only.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(cert, key)
        raw = socket.create_connection((nd.ip, nd.peer_port), timeout=TLS_PROBE_S)
        try:
            s = ctx.wrap_socket(raw, server_hostname=nd.ip)
        except (ssl.SSLError, ConnectionError, socket.timeout) as ex:
            raw.close()
            return ("refused", "handshake: %r" % ex)
        try:
            # A raft_uv handshake claiming claim_id (protocol 1, id, address
            # length, address padded to 8), as a rogue peer would send.
            # The address is the claimed node's real one, so an accepted
            # connection is indistinguishable from that peer's own.
            me = self.c.node(claim_id)
            addr = ("%s/%s" % (me.peer, me.client)).encode() + b"\0"
            addr += b"\0" * (-len(addr) % 8)
            s.sendall(struct.pack("<QQQ", 1, claim_id, len(addr)) + addr)
            s.settimeout(TLS_ACCEPT_QUIET_S if verify_server else TLS_PROBE_S)
            data = s.recv(1)
            if not data:
                return ("refused", "EOF after handshake")
            return ("open", "read %r" % data)
        except socket.timeout:
            return ("open", "no alert within %.1fs" % s.gettimeout())
        except (ssl.SSLError, ConnectionError) as ex:
            return ("refused", "post-handshake: %r" % ex)
        finally:
            s.close()

    def test_4_peer_without_valid_cert_refused(self):
        leader = self.c.wait_leader()
        fol = next(n for n in self.c.running() if n.id != leader.id)
        tmp = tempfile.mkdtemp(prefix="warden-ct-foreign-", dir=self.c.tmp)
        fcert, fkey, _ = wt.gen_foreign_client_cert(tmp, role="peer", name="n2")
        admin_cert, admin_key = self.c.cert_paths("admin")
        before = {nd.id: nd.status().tls_refused for nd in (leader, fol)}
        cases = [("no certificate", None, None),
                 ("foreign-CA peer/n2", fcert, fkey),
                 ("cluster-CA role admin", admin_cert, admin_key)]
        for target in (leader, fol):
            for what, cert, key in cases:
                kind, why = self._probe_raft_port(target, cert, key)
                self.assertEqual(kind, "refused", "n%d raft port, %s: %s" % (target.id, what, why))
        # Control: a real peer certificate (the follower's own) claiming
        # its own id is accepted, so the refusals above are about the
        # certificate and not about TLS settings. The server is verified
        # too: node certificates carry SAN IP.
        own = os.path.join(self.c.certs, "node-%d.pem" % fol.id)
        own_key = os.path.join(self.c.certs, "node-%d-key.pem" % fol.id)
        kind, why = self._probe_raft_port(leader, own, own_key, verify_server=True,
                                          claim_id=fol.id)
        self.assertEqual(kind, "open", "n%d's own cert to the leader: %s" % (fol.id, why))
        # The same valid certificate claiming another server id is refused
        # by the authorize hook (peer/n<id> must match the claimed id).
        other = next(n.id for n in self.c.nodes.values() if n.id not in (fol.id, leader.id))
        kind, why = self._probe_raft_port(leader, own, own_key, claim_id=other)
        self.assertEqual(kind, "refused", "cert n%d claiming id %d: %s" % (fol.id, other, why))
        after = {nd.id: nd.status().tls_refused for nd in (leader, fol)}
        for nid in before:
            self.assertGreaterEqual(after[nid] - before[nid], len(cases),
                                    "tls_refused on n%d: %s -> %s" % (nid, before, after))
        # The cluster still works.
        i = dev_id("after-tls")
        enroll(self.c, i)
        self.c.wait_converged()
        self.assert_everywhere([i])


class KillLeaderTest(ClusterBase):

    def test_kill9_leader_new_leader_old_rejoins(self):
        old = self.c.wait_leader()
        term0 = old.status().term
        first = [dev_id("kl-a") for _ in range(N_BASIC)]
        for i in first:
            enroll(self.c, i)
        self.c.wait_converged()
        old.kill9()
        new = self.c.wait_leader()
        self.assertNotEqual(new.id, old.id)
        self.assertGreater(new.status().term, term0)
        survivor = next(n for n in self.c.running() if n.id != new.id)
        second = []
        for k in range(N_BASIC):
            i = dev_id("kl-b")
            enroll(self.c, i, node=survivor if k % 2 else new)
            second.append(i)
        self.assert_everywhere(first + second, nodes=[new])
        old.restart()
        st = self.c.wait_converged(at_least=new.status().commit_index)
        self.assertEqual(st[old.id].leader_id, new.id, ct._fmt_status(st[old.id]))
        self.assert_everywhere(first + second)
        # The rejoined node still redirects / serves through the leader.
        i = dev_id("kl-c")
        enroll(self.c, i, node=old)
        self.c.wait_converged()
        self.assert_everywhere([i])


class CrashAllTest(ClusterBase):

    def _writer(self, w, stop, acked, ambiguous, errors, lock):
        for k in range(CRASH_PER_WRITER_MAX):
            if stop.is_set():
                return
            i = "crash-%d-w%d-%05d" % (wt.SEED, w, k)
            try:
                r = enroll(self.c, i, idem="idem-" + i, process="w%d" % w,
                           timeout=CRASH_CALL_DEADLINE_S, deadline_s=CRASH_CALL_DEADLINE_S)
                with lock:
                    acked[i] = r.device.created_index
            except grpc.RpcError as ex:
                with lock:
                    if ex.code() in (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED, SC.CANCELLED,
                                     SC.INTERNAL, SC.UNKNOWN):
                        ambiguous.add(i)
                    else:
                        errors.append((i, ex.code().name, ex.details()))
                if stop.is_set():
                    return
                time.sleep(ct.RETRY_PAUSE_S)
            except Exception as ex:  # noqa: BLE001 - reported by the test
                with lock:
                    errors.append((i, "exception", repr(ex)))
                return

    def test_kill9_all_mid_stream_no_loss_no_double_apply(self):
        self.c.wait_leader()
        stop = threading.Event()
        lock = threading.Lock()
        acked, ambiguous, errors = {}, set(), []
        ths = [threading.Thread(target=self._writer, daemon=True,
                                args=(w, stop, acked, ambiguous, errors, lock))
               for w in range(CRASH_WRITERS)]
        for t in ths:
            t.start()
        deadline = time.monotonic() + CRASH_WAIT_S
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= CRASH_ACKS_BEFORE:
                    break
            time.sleep(0.01)
        with lock:
            n_before = len(acked)
        self.assertGreaterEqual(n_before, CRASH_ACKS_BEFORE,
                                "only %d acks in %.0fs before the crash" % (n_before, CRASH_WAIT_S))
        # Writers are still sending: kill every node, leader last.
        for nd in sorted(self.c.running(), key=lambda n: n.status().state == "leader"):
            nd.kill9()
        stop.set()
        for t in ths:
            t.join(timeout=CRASH_CALL_DEADLINE_S * 4)
            self.assertFalse(t.is_alive(), "writer did not stop")
        self.assertEqual(errors, [], "definite errors during the stream")
        self.c.history.note("crash: %d acked, %d ambiguous" % (len(acked), len(ambiguous)))
        for nd in self.c.nodes.values():
            nd.start(wait=False)
        for nd in self.c.nodes.values():
            nd.wait_up()
        self.c.wait_leader()

        # Exactly once under retry: an acknowledged write re-sent with its
        # key returns its first result; an ambiguous one resolves to one
        # result, never ALREADY_EXISTS.
        sample = sorted(acked)[:: max(1, len(acked) // CRASH_REPLAY_SAMPLE)][:CRASH_REPLAY_SAMPLE]
        for i in sample:
            r = enroll(self.c, i, idem="idem-" + i, process="replay")
            self.assertEqual(r.device.created_index, acked[i], "replay of acked %s" % i)
        resolved = {}
        for i in sorted(ambiguous):
            try:
                r = enroll(self.c, i, idem="idem-" + i, process="resolve")
            except grpc.RpcError as ex:
                self.fail("retry of ambiguous %s with its key: %s %s"
                          % (i, ex.code(), ex.details()))
            resolved[i] = r.device.created_index

        st = self.c.wait_converged()
        applied = {s.applied_index for s in st.values()}
        fsm = {s.fsm_applied_index for s in st.values()}
        self.assertEqual(len(applied), 1, ct._fmt_statuses(st))
        self.assertEqual(len(fsm), 1, ct._fmt_statuses(st))

        prefix = "crash-%d-" % wt.SEED
        views = {}
        for nd in self.c.running():
            devs = [d for d in nd.list_serializable() if d.device_id.startswith(prefix)]
            ids = [d.device_id for d in devs]
            self.assertEqual(len(ids), len(set(ids)), "n%d lists an id twice" % nd.id)
            views[nd.id] = {d.device_id: d for d in devs}
        ref_id = min(views)
        ref = views[ref_id]
        for nid, v in views.items():
            self.assertEqual({k: device_key(d) for k, d in v.items()},
                             {k: device_key(d) for k, d in ref.items()},
                             "n%d and n%d differ" % (nid, ref_id))
        missing = sorted(set(acked) - set(ref))
        self.assertEqual(missing, [], "acknowledged writes lost")
        for i, idx in acked.items():
            self.assertEqual(ref[i].created_index, idx, "acked %s changed index" % i)
        for i, idx in resolved.items():
            self.assertEqual(ref[i].created_index, idx)
        unexpected = sorted(set(ref) - set(acked) - ambiguous)
        self.assertEqual(unexpected, [], "devices nobody asked for")
        created = [d.created_index for d in ref.values()]
        self.assertEqual(len(created), len(set(created)),
                         "a created_index used twice: a command applied twice")
        msg = ("crash check: %d acked (%d before the crash), %d ambiguous, "
               "%d devices, applied=%s" % (len(acked), n_before, len(ambiguous), len(ref), applied))
        self.c.history.note(msg)
        print("\n  " + msg, file=sys.stderr)


class SnapshotTest(ClusterBase):
    EXTRA, THRESHOLD, TRAILING = snapshot_args()

    def test_far_behind_node_catches_up_by_snapshot(self):
        leader = self.c.wait_leader()
        lag = next(n for n in self.c.running() if n.id != leader.id)
        base = [dev_id("snap-a") for _ in range(3)]
        for i in base:
            enroll(self.c, i)
        self.c.wait_converged()
        lag_last = lag.status().last_index
        lag.kill9()

        # Write until the leader's log no longer holds lag's next entry:
        # its snapshot minus the trailing entries is past lag_last.
        stop = threading.Event()
        lock = threading.Lock()
        written, errs = [], []
        count = [0]

        def writer(w):
            while not stop.is_set():
                with lock:
                    if count[0] >= SNAP_WRITES_MAX:
                        return
                    count[0] += 1
                    k = count[0]
                i = "snap-%d-%05d" % (wt.SEED, k)
                try:
                    enroll(self.c, i, idem=i, process="s%d" % w, record=False)
                    with lock:
                        written.append(i)
                except grpc.RpcError as ex:
                    with lock:
                        errs.append((i, ex.code().name, ex.details()))
                    return
                except Exception as ex:  # noqa: BLE001 - reported by the test
                    with lock:
                        errs.append((i, "exception", repr(ex)))
                    return

        ths = [threading.Thread(target=writer, args=(w,), daemon=True)
               for w in range(SNAP_WRITERS)]
        for t in ths:
            t.start()
        deadline = time.monotonic() + SNAP_WRITE_S
        compacted = False
        lst = None
        while time.monotonic() < deadline and any(t.is_alive() for t in ths):
            lst = self.c.wait_leader().status()
            if lst.snapshot_index > lag_last + self.TRAILING + 1:
                compacted = True
                break
            time.sleep(0.1)
        stop.set()
        for t in ths:
            t.join(timeout=ct.RPC_TIMEOUT_S * 2)
        self.c.history.note("snapshot: wrote %d while n%d was down (last %d); leader %s"
                            % (len(written), lag.id, lag_last, ct._fmt_status(lst)))
        self.assertEqual(errs, [])
        self.assertTrue(compacted, "leader never compacted past n%d's last index %d after %d "
                        "writes (threshold %d, trailing %d): %s"
                        % (lag.id, lag_last, len(written), self.THRESHOLD, self.TRAILING,
                           ct._fmt_status(lst)))

        lag.restart()
        st = self.c.wait_converged(at_least=lst.commit_index)
        s = st[lag.id]
        # Its log did not hold the entries, so the state must have come by
        # InstallSnapshot.
        self.assertTrue(s.restores > 0 or s.snapshot_index > lag_last,
                        "n%d caught up without a snapshot? %s" % (lag.id, ct._fmt_status(s)))
        self.assertGreater(s.restores, 0, "Status.restores on n%d: %s"
                           % (lag.id, ct._fmt_status(s)))
        print("\n  snapshot: %d writes while n%d was down; after restart %s"
              % (len(written), lag.id, ct._fmt_status(s)), file=sys.stderr)
        # State equal: every device on every node, identical.
        sample = base + written[:: max(1, len(written) // 50)] + written[-5:]
        self.assert_everywhere(sample)
        counts = {nd.id: len(nd.list_serializable()) for nd in self.c.running()}
        self.assertEqual(len(set(counts.values())), 1, counts)

        # Restart of a node whose own LMDB already holds its newest snapshot:
        # raft_start hands the snapshot to the fsm, which must skip it
        # without writing it out (consensus/node.c rfsm_restore), and the
        # node must serve the same state.
        other = next(n for n in self.c.running() if n.id != lag.id)
        before = other.status()
        self.assertGreater(before.snapshot_index, 0, ct._fmt_status(before))
        other.stop()
        other.restart()
        st = self.c.wait_converged(at_least=before.commit_index)
        s2 = st[other.id]
        self.assertGreaterEqual(s2.restores_skipped, 1, ct._fmt_status(s2))
        self.assertIn("local state is at or past the snapshot", other.log_text())
        self.assert_everywhere(sample)
        counts = {nd.id: len(nd.list_serializable()) for nd in self.c.running()}
        self.assertEqual(len(set(counts.values())), 1, counts)


class MembershipTest(ClusterBase):
    N_MAX = 4

    def members(self, st):
        return {m.id: m.role for m in st.members}

    def test_add_remove_transfer(self):
        c = self.c
        leader = c.wait_leader()
        ids = [dev_id("mem-a") for _ in range(3)]
        for i in ids:
            enroll(c, i)

        # -- add node 4 --
        n4 = c.node(4)
        n4.start(join=True)
        # First as a spare only: what an add whose promotion never ran (the
        # client's deadline, a leader change, catch-up rounds running out)
        # leaves behind. Adding it again with promotion must finish the job,
        # not answer ALREADY_EXISTS (a different address still would).
        r = c.call(ct.ADD, cluster_pb2.AddMemberRequest(id=4, peer_address=n4.peer,
                                                        client_address=n4.client,
                                                        spare_only=True))
        self.assertIn(4, [m.id for m in r.members], r)
        st = c.wait_leader().status()
        self.assertEqual(self.members(st).get(4), cluster_pb2.MEMBER_ROLE_SPARE,
                         ct._fmt_status(st))
        with self.assertRaises(grpc.RpcError) as cm:
            c.call(ct.ADD, cluster_pb2.AddMemberRequest(id=4, peer_address=n4.peer,
                                                        client_address="127.0.0.1:1"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        r = c.call(ct.ADD, cluster_pb2.AddMemberRequest(id=4, peer_address=n4.peer,
                                                        client_address=n4.client))
        self.assertIn(4, [m.id for m in r.members], r)
        deadline = time.monotonic() + MEMBER_TIMEOUT_S
        st = None
        while time.monotonic() < deadline:
            st = c.wait_leader().status()
            if self.members(st).get(4) == cluster_pb2.MEMBER_ROLE_VOTER:
                break
            time.sleep(0.1)
        self.assertEqual(self.members(st).get(4), cluster_pb2.MEMBER_ROLE_VOTER,
                         "n4 not promoted: %s" % ct._fmt_status(st))
        m4 = next(m for m in st.members if m.id == 4)
        self.assertEqual((m4.peer_address, m4.client_address), (n4.peer, n4.client))
        c.wait_converged()
        self.assert_everywhere(ids)

        # -- remove a follower from the original three --
        leader = c.wait_leader()
        gone = next(n for n in (c.node(1), c.node(2), c.node(3)) if n.id != leader.id)
        r = c.call(ct.REMOVE, cluster_pb2.RemoveMemberRequest(id=gone.id))
        self.assertNotIn(gone.id, [m.id for m in r.members], r)
        gone.stop()
        stay = [n for n in c.running()]
        self.assertEqual(len(stay), 3)
        st = c.wait_leader().status()
        self.assertEqual(sorted(self.members(st)), sorted(n.id for n in stay),
                         ct._fmt_status(st))
        more = [dev_id("mem-b") for _ in range(3)]
        for i in more:
            enroll(c, i)
        c.wait_converged()
        self.assert_everywhere(ids + more)

        # -- transfer leadership to a named node (the joiner, unless it
        # already leads) --
        leader = c.wait_leader()
        target = n4 if leader.id != 4 else next(n for n in stay if n.id != 4)
        r = c.call(ct.TRANSFER, cluster_pb2.TransferLeadershipRequest(id=target.id))
        self.assertEqual(r.leader_id, target.id, r)
        deadline = time.monotonic() + MEMBER_TIMEOUT_S
        sts = {}
        while time.monotonic() < deadline:
            sts = c.statuses()
            if all(not isinstance(s, Exception) and s.leader_id == target.id
                   for s in sts.values()) and sts[target.id].state == "leader":
                break
            time.sleep(0.1)
        for nid, s in sts.items():
            self.assertFalse(isinstance(s, Exception), "n%d: %r" % (nid, s))
            self.assertEqual(s.leader_id, target.id, "n%d: %s" % (nid, ct._fmt_status(s)))
            self.assertEqual(s.leader_address, target.client)
        self.assertEqual(sts[target.id].state, "leader")
        # Transfer to a server that is not a voter any more is refused and
        # leadership stays where it is.
        try:
            c.call(ct.TRANSFER, cluster_pb2.TransferLeadershipRequest(id=gone.id))
            self.fail("transfer to removed n%d succeeded" % gone.id)
        except grpc.RpcError as ex:
            self.assertIn(ex.code(), (SC.NOT_FOUND, SC.INVALID_ARGUMENT,
                                      SC.FAILED_PRECONDITION), ex.details())
        self.assertEqual(c.wait_leader().id, target.id)
        last = dev_id("mem-c")
        enroll(c, last, node=target)
        c.wait_converged()
        self.assert_everywhere(ids + more + [last])


if __name__ == "__main__":
    ct.main()
