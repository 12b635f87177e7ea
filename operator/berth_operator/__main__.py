"""`python -m berth_operator`: run the operator (the equivalent of `kopf run` for this package)."""

import argparse
import logging
import sys

import kopf

from berth_operator import handlers, settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="berth-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch ModelDeployments in every namespace",
    )
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; globs as in kopf)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="join kopf peering NAME for HA (default: standalone)",
    )
    parser.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        default=None,
        help="serve the operator's Prometheus metrics on 0.0.0.0:PORT (default: not served)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=settings.Options.resync_seconds,
        help="how often each ModelDeployment is re-checked",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=settings.Options.drain_seconds,
        help="how long a leaving canary stays up at weight 0 before it is deleted",
    )
    parser.add_argument(
        "--server-image",
        default=settings.ServerImages.cpu,
        help="server image of ModelDeployments without GPUs and without spec.server.image",
    )
    parser.add_argument(
        "--server-gpu-image",
        default=settings.ServerImages.gpu,
        help="server image of ModelDeployments with resources.gpu > 0, unless spec.server.image",
    )
    parser.add_argument(
        "--server-run-as-user",
        type=_user_id,
        metavar="UID|cluster",
        default=settings.ServerSecurity.run_as_user,
        help="UID, GID and fsGroup of server pods; 'cluster' leaves them to the cluster",
    )
    parser.add_argument(
        "--allow-host-path",
        action="store_true",
        help="serve ModelDeployments whose model storage is a hostPath (local clusters only)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every reconcile step")
    parser.add_argument("--debug", action="store_true", help="log kopf's internals too")
    return parser.parse_args(argv)


def _user_id(value: str) -> int | None:
    """A positive UID, or "cluster" for None."""
    if value == "cluster":
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a positive UID nor 'cluster'")
    return int(value)


class QuietResync(logging.Filter):
    """Drops kopf's "Timer 'reconcile' succeeded" line: one per object per resync would bury the
    lines that matter (applies, deletes, rollbacks); --verbose keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timer 'reconcile' succeeded")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    kopf.configure(verbose=args.verbose, debug=args.debug)
    if not (args.verbose or args.debug):
        logging.getLogger("kopf.objects").addFilter(QuietResync())
    registry = kopf.OperatorRegistry()
    handlers.register(
        registry,
        settings.Options(
            resync_seconds=args.resync_seconds,
            drain_seconds=args.drain_seconds,
            images=settings.ServerImages(cpu=args.server_image, gpu=args.server_gpu_image),
            metrics_port=args.metrics_port,
            security=settings.ServerSecurity(
                run_as_user=args.server_run_as_user, allow_host_path=args.allow_host_path
            ),
        ),
    )
    kopf.run(
        registry=registry,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
