"""``python -m cluster.worker_pool --host H --port P``: Beam's EXTERNAL worker pool, bound to one address.

This is ``apache_beam.runners.worker.worker_pool_main`` (each ``StartWorker`` call starts a fresh
``python -c ... SdkHarness`` process) except for where it listens: ``worker_pool_main`` binds every
interface, which is right for a Kubernetes sidecar (one pool per pod network) but lets only one pool per port
exist on a single machine. Binding one loopback address per TaskManager (127.0.0.11, 127.0.0.12, ...) gives
each TaskManager its own pool behind the same ``--environment_config`` name, as the sidecars do.
"""
import argparse
import logging
import sys
import threading
from concurrent import futures
from typing import List, Optional

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.worker_pool", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="the address to listen on, e.g. 127.0.0.11")
    parser.add_argument("--port", type=int, required=True, help="the port to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        # gRPC sets SO_REUSEPORT by default: a second pool on the same address and port (another cluster on this
        # machine) would then start too and take part of this one's connections; without it, it fails to start
        options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0),
                 ("grpc.so_reuseport", 0)])
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=True), server)
    if not server.add_insecure_port(f"{args.host}:{args.port}"):
        raise OSError(f"cannot listen on {args.host}:{args.port}")
    server.start()
    logging.info("worker pool listening on %s:%d", args.host, args.port)
    threading.Event().wait()  # until terminated; the SDK processes it started end with their runner
    return 0


if __name__ == "__main__":
    sys.exit(main())
