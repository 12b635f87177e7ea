"""`kubectl berth`: status, promote, rollback and history of a ModelDeployment.

Every action is a patch of the resource's spec, the same one a user could write with
`kubectl patch`, so the operator needs no extra API and GitOps tools see an ordinary spec change.
"""

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import kubernetes.config
from kubernetes.client.exceptions import ApiException

from berth_operator import kinds, kubeapi, naming


class PluginError(Exception):
    """A request the plugin refuses, with the message the user sees."""


def promote_patch(md: Mapping[str, Any]) -> dict[str, Any]:
    """The canary becomes stable and leaves the spec; the operator keeps its track serving until
    the stable track runs its version everywhere. Only a canary whose servers are all ready is
    promoted: one the operator rolled back, or one still coming up, is refused."""
    canary = md.get("spec", {}).get("canary")
    if not canary:
        raise PluginError(f"{_name(md)} has no canary to promote")
    status = md.get("status", {})
    version = canary["version"]
    failed = status.get("rolledBackCanary") or {}
    if failed.get("version") == version:
        raise PluginError(
            f"{_name(md)}: canary version {version} was rolled back by the operator "
            f"({failed.get('reason', '')}); name another version or remove spec.canary"
        )
    observed = status.get("canary") or {}
    wanted = int(canary.get("replicas", 1))
    ready = int(observed.get("readyReplicas", 0)) if observed.get("version") == version else 0
    if ready < wanted or "drainingSince" in observed:
        raise PluginError(
            f"{_name(md)}: canary version {version} is not ready ({ready}/{wanted} servers); "
            "promote it once `kubectl berth status` shows every canary server ready"
        )
    return {"spec": {"stable": {"version": version}, "canary": None}}


def rollback_patch(md: Mapping[str, Any], to_revision: int | None) -> dict[str, Any]:
    """Without a revision: drop the canary, or when there is none return to the previous
    revision (like `kubectl rollout undo`). With one: that revision's version becomes stable."""
    spec = md.get("spec", {})
    history: Sequence[Mapping[str, Any]] = md.get("status", {}).get("history", [])
    if to_revision is None:
        if spec.get("canary"):
            return {"spec": {"canary": None}}
        if len(history) < 2:
            raise PluginError(f"{_name(md)} has no canary and no earlier revision to roll back to")
        return {"spec": {"stable": {"version": history[-2]["version"]}}}
    for entry in history:
        if entry["revision"] == to_revision:
            return {"spec": {"stable": {"version": entry["version"]}, "canary": None}}
    known = ", ".join(str(e["revision"]) for e in history) or "none"
    raise PluginError(f"{_name(md)} has no revision {to_revision} (known: {known})")


def format_status(md: Mapping[str, Any]) -> str:
    status = md.get("status", {})
    lines = [f"ModelDeployment {_name(md)}", f"  url:    {status.get('url', '-')}"]
    for track in naming.TRACKS:
        observed = status.get(track)
        if observed:
            lines.append(
                f"  {track + ':':7} version {observed['version']}, "
                f"{observed.get('readyReplicas', 0)}/{observed.get('replicas', 0)} ready"
            )
    lines.append(f"  weight: {status.get('weight', 0)}% to canary")
    failed = status.get("rolledBackCanary")
    if failed:
        lines.append(f"  rolled back canary {failed['version']}: {failed['message']}")
    for condition in status.get("conditions", []):
        message = f" ({condition['message']})" if condition.get("message") else ""
        lines.append(
            f"  {condition['type']}={condition['status']} {condition.get('reason', '')}{message}"
        )
    return "\n".join(lines)


def format_history(md: Mapping[str, Any]) -> str:
    rows = [f"{'REVISION':<10}{'VERSION':<10}TIME"]
    for entry in md.get("status", {}).get("history", []):
        rows.append(f"{entry['revision']:<10}{entry['version']:<10}{entry.get('time', '')}")
    return "\n".join(rows)


def _name(md: Mapping[str, Any]) -> str:
    meta = md.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl berth", description=__doc__)
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("status", "show tracks, weight and conditions"),
        ("promote", "make the canary the stable version"),
        ("rollback", "drop the canary, or return to an earlier revision"),
        ("history", "list stable revisions"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("name", help="ModelDeployment name")
        sub.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if command == "rollback":
            sub.add_argument("--to-revision", type=int, default=None, help="revision from history")
    return parser


def _current_namespace() -> str:
    _, active = kubernetes.config.list_kube_config_contexts()
    return str(active.get("context", {}).get("namespace") or "default")


def run(argv: Sequence[str]) -> str:
    """Execute one command and return what to print; raises PluginError or ApiException."""
    args = _parser().parse_args(argv)
    kubernetes.config.load_kube_config()
    namespace = args.namespace or _current_namespace()
    client = kubeapi.Client()
    resource = kinds.MODEL_DEPLOYMENT
    md = client.get(resource.api_version, resource.kind, namespace, args.name)
    if args.command == "status":
        return format_status(md)
    if args.command == "history":
        return format_history(md)
    if args.command == "promote":
        patch = promote_patch(md)
    else:
        patch = rollback_patch(md, args.to_revision)
    client.patch_model_deployment(namespace, args.name, patch)
    version = patch["spec"].get("stable", {}).get("version")
    done = "promoted" if args.command == "promote" else "rolled back"
    target = f"; stable version is now {version}" if version is not None else "; canary removed"
    return f"{resource.kind.lower()}.{resource.group}/{args.name} {done}{target}"


def main(argv: Sequence[str] | None = None) -> None:
    try:
        print(run(sys.argv[1:] if argv is None else argv))
    except PluginError as error:
        sys.exit(f"error: {error}")
    except ApiException as error:
        sys.exit(f"error: {error.status} {error.reason}: {error.body}")
