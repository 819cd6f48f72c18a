"""net: iptables partitions between the nodes' loopback addresses.

Two dedicated chains, always removed on exit (see Net.heal_and_remove and
remove_chains, which `warden-jepsen --cleanup` also calls):

  WARDEN-JEPSEN      jumped from INPUT and OUTPUT: `-s IP_a -d IP_b -j DROP`
                     per cut link.  These match only once the peer transport
                     binds its outbound sockets to the node's address
                     (today every loopback connection leaves from 127.0.0.1).
  WARDEN-JEPSEN-OUT  jumped from OUTPUT: `-m owner --gid-owner GID_a -d IP_b
                     -j DROP`.  Each node runs under its own gid (db.py), so
                     this cuts a->b whatever source address the kernel
                     picked.  The owner match is valid in OUTPUT only, hence
                     the second chain.

raft_uv sends each direction's messages on the sender's own outbound
connection, so dropping a->b and b->a cuts a link both ways.  Only
127.0.0.x addresses ever appear in a rule.
"""

import subprocess
import threading

CHAIN = "WARDEN-JEPSEN"
CHAIN_OUT = "WARDEN-JEPSEN-OUT"


def set_slot(slot):
    """Slot k > 0 owns chains WARDEN-JEPSEN<k> and WARDEN-JEPSEN<k>-OUT, so
    runs in different slots (different node addresses, see db.set_slot)
    never touch each other's rules.  Slot 0 keeps the historical names."""
    global CHAIN, CHAIN_OUT
    CHAIN = "WARDEN-JEPSEN%s" % (slot or "")
    CHAIN_OUT = CHAIN + "-OUT"
# One iptables invocation (xtables lock waits included).
IPT_TIMEOUT_S = 20.0
IPT = "iptables"


def ipt(*args, check=True):
    r = subprocess.run([IPT, "-w", "5", *args], capture_output=True, timeout=IPT_TIMEOUT_S)
    if check and r.returncode != 0:
        raise RuntimeError("iptables %s: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r.returncode == 0


def chain_exists(name):
    return ipt("-S", name, check=False)


def remove_chains():
    """Idempotent: unhook and delete both chains. Returns what was found."""
    found = []
    for hook, chain in (("INPUT", CHAIN), ("OUTPUT", CHAIN), ("OUTPUT", CHAIN_OUT)):
        for _ in range(16):   # bounded: duplicate jumps from crashed runs
            if not ipt("-D", hook, "-j", chain, check=False):
                break
            found.append("%s->%s" % (hook, chain))
    for chain in (CHAIN, CHAIN_OUT):
        if chain_exists(chain):
            ipt("-F", chain, check=False)
            ipt("-X", chain, check=False)
            found.append(chain)
    return found


def leftovers():
    """Chains of ours still present (for run-ci.sh and --cleanup)."""
    return [c for c in (CHAIN, CHAIN_OUT) if chain_exists(c)]


class Net:
    def __init__(self, db):
        self.db = db
        self.lock = threading.Lock()
        self.installed = False
        self.grudge = {}
        self.warnings = []

    def setup(self):
        remove_chains()
        ipt("-N", CHAIN)
        ipt("-N", CHAIN_OUT)
        ipt("-I", "INPUT", "-j", CHAIN)
        ipt("-I", "OUTPUT", "-j", CHAIN)
        ipt("-I", "OUTPUT", "-j", CHAIN_OUT)
        self.installed = True

    def ensure(self):
        """Re-install the chains if something outside this run removed them
        (another session's `iptables -F`/`-X`, or a `--cleanup` from an
        older checkout that did not take the run lock).  Returns True when
        they had to be re-created, which the nemesis records as an error."""
        if all(chain_exists(c) for c in (CHAIN, CHAIN_OUT)) and \
                ipt("-C", "INPUT", "-j", CHAIN, check=False) and \
                ipt("-C", "OUTPUT", "-j", CHAIN_OUT, check=False):
            return False
        self.setup()
        return True

    def partition(self, grudge):
        """grudge: {node id: set of node ids it must not reach}; symmetric
        by construction of the callers, applied as given."""
        with self.lock:
            if self.ensure():
                raise_later = RuntimeError("iptables chains vanished mid-run; re-installed")
            else:
                raise_later = None
            self._flush()
            for a, bs in sorted(grudge.items()):
                na = self.db.nodes[a]
                for b in sorted(bs):
                    nb = self.db.nodes[b]
                    ipt("-A", CHAIN, "-s", na.ip, "-d", nb.ip, "-j", "DROP")
                    ipt("-A", CHAIN_OUT, "-m", "owner", "--gid-owner", str(na.gid),
                        "-d", nb.ip, "-j", "DROP")
            self.grudge = {a: set(bs) for a, bs in grudge.items()}
            if raise_later is not None:
                self.warnings.append(str(raise_later))

    def _flush(self):
        ipt("-F", CHAIN, check=False)
        ipt("-F", CHAIN_OUT, check=False)
        self.grudge = {}

    def heal(self):
        with self.lock:
            self._flush()

    def teardown(self):
        with self.lock:
            self.installed = False
            return remove_chains()
