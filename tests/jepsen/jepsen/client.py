"""client: one Jepsen process's leader-following gRPC client, and the
classification of every outcome into :ok / :fail / :info.

  reply                                       -> :ok (the caller may still
                                                 turn a domain error into :fail)
  UNAVAILABLE, no `warden-outcome: unknown`,
    from a server (not the leader, busy)      -> not proposed: follow the
                                                 `warden-leader` hint (bounded
                                                 hops); out of hops -> :fail
  connect refused / no route before sending   -> try the next node; -> :fail
  UNAVAILABLE + `warden-outcome: unknown`     -> :info (may still commit)
  DEADLINE_EXCEEDED, CANCELLED, connection
    lost mid-call                             -> :info
  any other status                            -> :fail (the server refused;
                                                 nothing was applied)
"""

import random
import time

from . import wire
from .wire import grpc

SC = grpc.StatusCode

# Leader hints followed by one op: a stale hint can last an election or two.
MAX_HOPS = 4
# Per-attempt RPC deadline; an op past it is :info.
RPC_TIMEOUT_S = 3.0
# Whole op (all hops) bound.
OP_DEADLINE_S = 6.0
# Pause before the next node when no leader is known.
NO_LEADER_PAUSE_S = 0.05

_NOT_SENT = ("failed to connect", "connection refused", "no route to host",
             "dns resolution failed", "name resolution")


class Outcome:
    __slots__ = ("type", "resp", "code", "error", "node")

    def __init__(self, typ, resp=None, code=None, error=None, node=None):
        self.type, self.resp, self.code, self.error, self.node = typ, resp, code, error, node

    def __repr__(self):
        return "Outcome(%s %s %s)" % (self.type, self.code, self.error)


def classify(ex):
    """(kind, error keyword) for a grpc.RpcError: kind is 'redirect',
    'not-sent', 'info' or 'fail'."""
    code = ex.code()
    det = (ex.details() or "").lower()
    if code == SC.UNAVAILABLE:
        if wire.trailer(ex, "warden-outcome") == "unknown":
            return "info", "outcome-unknown"
        if any(s in det for s in _NOT_SENT):
            return "not-sent", "unreachable"
        if wire.trailer(ex, "warden-leader") or "not the leader" in det \
                or "no leader" in det or "busy" in det or "too many" in det:
            return "redirect", "not-leader"
        # The library's own UNAVAILABLE after sending (socket closed, reset):
        # the request may have reached the leader.
        return "info", "connection-lost"
    if code in (SC.DEADLINE_EXCEEDED, SC.CANCELLED, SC.UNKNOWN, SC.INTERNAL):
        return "info", code.name.lower().replace("_", "-")
    return "fail", code.name.lower().replace("_", "-")


class Client:
    """Leader-following calls for one process thread. Channels are shared
    (db.channel) so a hundred process ids do not open a hundred connections
    per node."""

    def __init__(self, db, rng, role="admin"):
        self.db = db
        self.rng = rng
        self.role = role          # the client certificate (db.channel)
        self.target = None

    def _targets(self):
        ids = sorted(self.db.members)
        self.rng.shuffle(ids)
        return [self.db.nodes[i].client for i in ids]

    def call(self, method, req, metadata=None, timeout=RPC_TIMEOUT_S,
             deadline_s=OP_DEADLINE_S, follow=True, role=None):
        role = role or self.role
        deadline = time.monotonic() + deadline_s
        order = self._targets()
        if self.target in order:
            order.remove(self.target)
            order.insert(0, self.target)
        hops = 0
        last = Outcome("fail", error="no-attempt")
        tried = 0
        while time.monotonic() < deadline and hops <= MAX_HOPS and tried < 3 * len(order):
            addr = order[0]
            tried += 1
            try:
                resp = wire.stub(self.db.channel(addr, role), method)(
                    req, timeout=min(timeout, max(0.05, deadline - time.monotonic())),
                    metadata=metadata)
                self.target = addr
                return Outcome("ok", resp=resp, node=addr)
            except grpc.RpcError as ex:
                kind, err = classify(ex)
                if kind in ("info", "fail"):
                    if kind == "info" and err == "connection-lost":
                        self.db.drop_channel(addr, role)
                    return Outcome(kind, code=ex.code(), error=err, node=addr)
                last = Outcome("fail", code=ex.code(), error=err, node=addr)
                if not follow:
                    return last
                if kind == "not-sent":
                    self.db.drop_channel(addr, role)
                    order = order[1:] + order[:1]
                    time.sleep(NO_LEADER_PAUSE_S)
                    continue
                hint = wire.trailer(ex, "warden-leader")
                hops += 1
                if hint and hint != addr:
                    if hint in order:
                        order.remove(hint)
                    order.insert(0, hint)
                else:
                    order = order[1:] + order[:1]
                    time.sleep(NO_LEADER_PAUSE_S * (1 + random.random()))
        return last
