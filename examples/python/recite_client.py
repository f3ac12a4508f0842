#!/usr/bin/python3
"""A recite client in Python over gRPC, with stubs generated from proto/ (run generate.sh first).

Commands: invert TEXT (submit a job and watch it to its result), submit TEXT (print the new job's id), watch JOB_ID,
cancel JOB_ID. The server and token come from RECITE_SERVER (http:// or https:// URL; RECITE_CA_FILE trusts a
private certificate) and RECITE_TOKEN, as for the recite CLI. A refused call prints its gRPC code and the server's
message, and exits 1.
"""
import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import grpc

# The generated packages (recite.v1, buf.validate) live in gen/ beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))
from recite.v1 import recite_pb2 as pb  # noqa: E402
from recite.v1 import recite_pb2_grpc as rpc  # noqa: E402


def connect():
    """Return a stub for RECITE_SERVER (default http://127.0.0.1:7070) and the call metadata with RECITE_TOKEN."""
    url = urlsplit(os.environ.get("RECITE_SERVER", "http://127.0.0.1:7070"))
    if url.scheme == "https":
        ca_file = os.environ.get("RECITE_CA_FILE")
        roots = Path(ca_file).read_bytes() if ca_file else None
        channel = grpc.secure_channel(url.netloc, grpc.ssl_channel_credentials(root_certificates=roots))
    elif url.scheme == "http":
        channel = grpc.insecure_channel(url.netloc)
    else:
        sys.exit(f"RECITE_SERVER: {url.geturl()!r} is not an http:// or https:// URL")
    token = os.environ.get("RECITE_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return rpc.ReciteServiceStub(channel), metadata


def spec_of(args):
    settings = pb.JobSettings(report_every=args.report_every)
    if args.keep_going:
        # a hit does not end it: it runs to max_iterations (the server's limit unless given) or until cancelled
        settings.continue_after_hit = True
        settings.max_iterations = 100_000
    if args.max_iterations:
        settings.max_iterations = args.max_iterations
    return pb.JobSpec(text=args.text, model=args.model, settings=settings)


def submit(stub, metadata, args):
    response = stub.SubmitJob(pb.SubmitJobRequest(spec=spec_of(args)), metadata=metadata)
    return response.job_id


def watch(stub, metadata, job_id):
    """Print a job's history as it comes (replayed, then live) until its result."""
    for response in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=metadata):
        event = response.event
        kind = event.WhichOneof("kind")
        if kind == "progress":
            p = event.progress
            print(f"iteration {p.iteration}: NLL {p.nll_sum:.2f}, correct prefix {p.correct_prefix}/{p.optimized_tokens}, "
                  f"argmax {json.dumps(p.argmax_text)}", flush=True)
        elif kind == "result":
            result = event.result
            best = result.restarts[result.best] if result.restarts else pb.RestartResult()
            line = f"result: {pb.Status.Name(result.status)}"
            if result.status == pb.STATUS_HIT:
                line += f" at iteration {best.iterations_to_hit}"
            else:
                line += f" after {best.iterations} iterations, best NLL {best.best_nll:.2f}"
            print(f"{line}, decodes to {json.dumps(best.decoded_text)}")
            return


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("invert", "submit"):
        command = commands.add_parser(name)
        command.add_argument("text")
        command.add_argument("--model", default="", help="a model name from ListModels (the server's default)")
        command.add_argument("--max-iterations", type=int, help="iterations per restart (the server's default, 1000)")
        command.add_argument("--report-every", type=int, default=25, help="iterations between progress reports")
        command.add_argument("--keep-going", action="store_true", help="do not stop at a hit: run until cancelled")
    for name in ("watch", "cancel"):
        commands.add_parser(name).add_argument("job_id")
    args = parser.parse_args()

    stub, metadata = connect()
    try:
        if args.command == "invert":
            job_id = submit(stub, metadata, args)
            print(f"job {job_id}", flush=True)
            watch(stub, metadata, job_id)
        elif args.command == "submit":
            print(submit(stub, metadata, args))
        elif args.command == "watch":
            watch(stub, metadata, args.job_id)
        elif args.command == "cancel":
            state = stub.CancelJob(pb.CancelJobRequest(job_id=args.job_id), metadata=metadata).state
            print(f"job {args.job_id}: cancelled ({pb.JobState.Name(state)} when asked)")
    except grpc.RpcError as error:
        print(f"recite_client.py: {error.code().name}: {error.details()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
