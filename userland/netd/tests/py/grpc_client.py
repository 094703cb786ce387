#!/usr/bin/env python3
"""An independent gRPC client (Python grpcio, stubs generated here from the
contract by grpcio-tools) that drives a Havn node's havn.v1.Intake: health,
reflection listing, upload, accept, watch to done, receipt, a refusal naming its
field, and a refusal without a client certificate. Prints one JSON line; exits
non-zero with the reason on any mismatch."""
import argparse
import hashlib
import json
import os
import sys
import tempfile


def fail(msg):
    print(f"grpc client: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def stubs(proto):
    """Compiles the .proto with grpcio-tools into a temporary package."""
    from grpc_tools import protoc
    import importlib

    out = tempfile.mkdtemp(prefix="havn-grpc-py-")
    root = os.path.dirname(os.path.dirname(os.path.dirname(proto)))
    rc = protoc.main(["protoc", f"-I{root}", f"--python_out={out}",
                      f"--grpc_python_out={out}", os.path.relpath(proto, root)])
    if rc != 0:
        fail(f"grpcio-tools could not compile {proto}")
    sys.path.insert(0, out)
    pb = importlib.import_module("havn.v1.intake_pb2")
    rpc = importlib.import_module("havn.v1.intake_pb2_grpc")
    return pb, rpc


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addr", required=True, help="host:port of the node")
    ap.add_argument("--proto", required=True, help="path of havn/v1/intake.proto")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--workflow", default="lm")
    ap.add_argument("--checksum", required=True)
    ap.add_argument("--job-id", default="py-1")
    ap.add_argument("--class", dest="klass", default="S")
    args = ap.parse_args()

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    pb, rpc = stubs(args.proto)
    read = lambda p: open(p, "rb").read()
    creds = grpc.ssl_channel_credentials(read(args.ca), read(args.key), read(args.cert))
    ch = grpc.secure_channel(args.addr, creds)
    grpc.channel_ready_future(ch).result(timeout=20)
    summary = {}

    # Health: the node and the service are SERVING.
    health = health_pb2_grpc.HealthStub(ch)
    for svc in ["", "havn.v1.Intake"]:
        st = health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=10).status
        if st != health_pb2.HealthCheckResponse.SERVING:
            fail(f"health of {svc!r} is {st}, not SERVING")
    summary["health"] = "SERVING"

    # Reflection lists the services; the Intake descriptor resolves.
    db = ProtoReflectionDescriptorDatabase(ch)
    services = sorted(db.get_services())
    for want in ["havn.v1.Intake", "grpc.health.v1.Health"]:
        if want not in services:
            fail(f"reflection does not list {want}: {services}")
    fd = db.FindFileContainingSymbol("havn.v1.Intake")
    methods = [m.name for s in fd.service for m in s.method if s.name == "Intake"]
    if set(methods) != {"AcceptJob", "GetJob", "WatchJob", "GetReceipt", "UploadArtifact"}:
        fail(f"reflected Intake methods: {methods}")
    summary["reflection"] = services

    intake = rpc.IntakeStub(ch)
    # Upload in chunks: the CID's digest is the sha256 of the bytes.
    data = bytes(range(256)) * 1000
    art = intake.UploadArtifact(
        iter([pb.ArtifactChunk(data=data[i:i + 65536]) for i in range(0, len(data), 65536)]),
        timeout=20,
    )
    if art.size != len(data) or not art.cid.startswith("b"):
        fail(f"upload answered {art}")
    summary["upload_cid"] = art.cid

    klass = getattr(pb, f"COMPUTE_CLASS_{args.klass}")
    req = pb.AcceptJobRequest(
        job_id=args.job_id,
        workflow=pb.WorkflowRef(id=args.workflow, checksum=args.checksum),
        compute_class=klass,
        timeout_ms=60000,
        seed=7,
    )
    ticket = intake.AcceptJob(req, timeout=20)
    states = []
    for s in intake.WatchJob(pb.WatchJobRequest(ticket_id=ticket.ticket_id, max_wait_seconds=120), timeout=130):
        states.append(pb.JobState.Name(s.state))
    if not states or states[-1] != "JOB_STATE_DONE":
        fail(f"watch ended without done: {states}")
    summary["states"] = states

    r = intake.GetReceipt(pb.GetReceiptRequest(job_id=args.job_id), timeout=20)
    if r.job_id != args.job_id or len(r.signature) != 64 or not r.signed_bytes:
        fail(f"receipt: {r}")
    summary["receipt"] = {"runtime_hash": r.runtime_hash, "node": r.node,
                          "signed_bytes_sha256": hashlib.sha256(r.signed_bytes).hexdigest()}

    # A refusal: an unknown enum value is INVALID_ARGUMENT naming the field.
    bad = pb.AcceptJobRequest()
    bad.CopyFrom(req)
    bad.job_id = args.job_id + "-bad"
    bad.compute_class = 9
    try:
        intake.AcceptJob(bad, timeout=20)
        fail("an unknown compute_class was accepted")
    except grpc.RpcError as e:
        md = dict(e.trailing_metadata() or ())
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT or md.get("havn-field") != "compute_class":
            fail(f"unknown compute_class: {e.code()} {md} {e.details()}")
        summary["refusal"] = {"code": e.code().name, "field": md["havn-field"], "message": e.details()}

    # No client certificate: the handshake is refused; the call never succeeds.
    anon = grpc.secure_channel(args.addr, grpc.ssl_channel_credentials(read(args.ca)))
    try:
        rpc.IntakeStub(anon).GetJob(pb.GetJobRequest(ticket_id=ticket.ticket_id), timeout=10)
        fail("a client without a certificate read a job")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAVAILABLE:
            fail(f"without a client certificate: {e.code()} {e.details()}")
        summary["no_client_cert"] = e.code().name

    print(json.dumps(summary))


if __name__ == "__main__":
    main()
