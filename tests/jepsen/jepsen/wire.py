"""wire: generated protobuf classes and method table for the warden API.

Reuses tests/integration/wardentest.py (protoc --python_out into
$WARDEN_BUILD/py, modules loaded by path) and adds the protos the control
program needs (cluster, telemetry, audit).  Import this module only after
WARDEN_BUILD is set: wardentest reads it at import time.
"""

import importlib.util
import os
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
os.environ.setdefault("WARDEN_SRC", SRC)

import wardentest as wt  # noqa: E402
from wardentest import grpc, inv_pb2  # noqa: E402,F401

PROTOC_TIMEOUT_S = 60.0


def _gen(rel):
    src = os.path.join(wt.SRC, "proto", rel)
    out = os.path.join(wt.PY_OUT, rel[:-len(".proto")] + "_pb2.py")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["protoc", "--python_out=" + wt.PY_OUT,
                        "-I" + os.path.join(wt.SRC, "proto"), src],
                       check=True, timeout=PROTOC_TIMEOUT_S)
    spec = importlib.util.spec_from_file_location(
        "wardenjepsen_pb_" + os.path.basename(out)[:-3], out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Generated modules that import warden/v1/inventory.proto get the one
# wardentest loaded (one descriptor, one Label class).
for _name in ("warden", "warden.v1"):
    sys.modules.setdefault(_name, types.ModuleType(_name))
sys.modules["warden.v1"].inventory_pb2 = inv_pb2
sys.modules["warden.v1.inventory_pb2"] = inv_pb2

cluster_pb2 = _gen("warden/v1/cluster.proto")
tlm_pb2 = _gen("warden/v1/telemetry.proto")
audit_pb2 = _gen("warden/v1/audit.proto")
acc_pb2 = _gen("warden/v1/access.proto")
ro_pb2 = _gen("warden/v1/rollout.proto")
ctl_pb2 = _gen("warden/v1/control.proto")
health_pb2 = wt.health_pb2

M = {}


def _m(path, req, resp, streaming=False):
    wt.METHODS[path] = (req, resp, streaming)
    M[path.rsplit("/", 1)[1]] = path


_m("/warden.v1.Cluster/Status", cluster_pb2.ClusterStatusRequest,
   cluster_pb2.ClusterStatusResponse)
_m("/warden.v1.Cluster/AddMember", cluster_pb2.AddMemberRequest,
   cluster_pb2.AddMemberResponse)
_m("/warden.v1.Cluster/RemoveMember", cluster_pb2.RemoveMemberRequest,
   cluster_pb2.RemoveMemberResponse)
_m("/warden.v1.Inventory/EnrollDevice", inv_pb2.EnrollDeviceRequest,
   inv_pb2.EnrollDeviceResponse)
_m("/warden.v1.Inventory/GetDevice", inv_pb2.GetDeviceRequest,
   inv_pb2.GetDeviceResponse)
_m("/warden.v1.Inventory/SetDeviceState", inv_pb2.SetDeviceStateRequest,
   inv_pb2.SetDeviceStateResponse)
_m("/warden.v1.Inventory/RebindDevice", inv_pb2.RebindDeviceRequest,
   inv_pb2.RebindDeviceResponse)
_m("/warden.v1.Telemetry/Submit", tlm_pb2.SubmitTelemetryRequest,
   tlm_pb2.SubmitTelemetryResponse)
_m("/warden.v1.Audit/Read", audit_pb2.ReadAuditRequest,
   audit_pb2.ReadAuditResponse)
_m("/warden.v1.Audit/Head", audit_pb2.AuditHeadRequest,
   audit_pb2.AuditHeadResponse)

_m("/warden.v1.Inventory/EnrollDevices", inv_pb2.EnrollDevicesRequest,
   inv_pb2.EnrollDevicesResponse)
_m("/warden.v1.Control/GetCommandKey", ctl_pb2.GetCommandKeyRequest,
   ctl_pb2.GetCommandKeyResponse)
for _n in ("SetAccessPolicy", "GetAccessPolicy", "RequestAccess", "CheckAccess",
           "RevokeGrant", "ListGrants", "Lock", "Unlock"):
    _m("/warden.v1.Access/" + _n, getattr(acc_pb2, _n + "Request"),
       getattr(acc_pb2, _n + "Response"))
for _n in ("ApproveAccess", "DenyAccess"):
    _m("/warden.v1.Access/" + _n, acc_pb2.ReviewAccessRequest, acc_pb2.ReviewAccessResponse)
for _n in ("RegisterReleaseKey", "CreateRelease", "GetRollout", "GetDesiredState",
           "ReportUpdateStatus"):
    _m("/warden.v1.Rollouts/" + _n, getattr(ro_pb2, _n + "Request"),
       getattr(ro_pb2, _n + "Response"))
for _n in ("Create", "Start", "Pause", "Resume", "Advance", "Abort"):
    _m("/warden.v1.Rollouts/%sRollout" % _n, getattr(ro_pb2, _n + "RolloutRequest"),
       ro_pb2.RolloutResponse)
# Issue 7 register workload: a version-checked label update (when present).
HAVE_UPDATE_LABELS = hasattr(inv_pb2, "UpdateDeviceLabelsRequest")
if HAVE_UPDATE_LABELS:
    _m("/warden.v1.Inventory/UpdateDeviceLabels", inv_pb2.UpdateDeviceLabelsRequest,
       inv_pb2.UpdateDeviceLabelsResponse)


def stub(channel, name):
    """Callable for method `name` (e.g. "EnrollDevice") on channel."""
    return wt.stub(channel, M[name])


def trailer(ex, key):
    try:
        md = ex.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - some errors carry no call
        return None
    for k, v in md:
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None
