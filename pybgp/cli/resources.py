"""``pybgp apply|create|get|delete`` over Calico v3 resources (calicoctl's verbs).

Files are parsed and validated completely before anything is written; a bad
document is reported as ``FILE: document N (Kind name): field …: problem``
and nothing is written. Writes are one etcd transaction per command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pybgp.cli.main import datastore_flags, open_kv
from pybgp.errors import ValidationError


def register(sub: argparse._SubParsersAction) -> None:
    for verb, text in (
        ("apply", "create or replace resources from a file"),
        ("create", "create resources from a file (fails if any exists)"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("-f", "--filename", required=True, help="YAML/JSON file, or - for stdin")
        datastore_flags(p)
        p.set_defaults(func=run_write, verb=verb)

    p = sub.add_parser("get", help="show resources")
    p.add_argument("kind", help="resource kind, e.g. ippool, node, bgppeer, wep")
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", default="ps", choices=["ps", "wide", "yaml", "json"])
    p.add_argument("-n", "--namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    datastore_flags(p)
    p.set_defaults(func=run_get)

    p = sub.add_parser("delete", help="delete resources by kind and name, or from a file")
    p.add_argument("kind", nargs="?")
    p.add_argument("name", nargs="?")
    p.add_argument("-f", "--filename")
    p.add_argument("-n", "--namespace")
    p.add_argument("--skip-not-exists", action="store_true")
    datastore_flags(p)
    p.set_defaults(func=run_delete)


def load_documents(path: str) -> list[Any]:
    """Parse and validate every resource in ``path`` (YAML/JSON, Lists expanded)."""
    from pybgp.model import parse_documents

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ValidationError(f"cannot read file: {exc.strerror}", source=path) from exc
    resources = parse_documents(text, source=path)
    if not resources:
        raise ValidationError("no resources in file", source=path)
    keys = [r.etcd_key() for r in resources]
    for key in keys:
        if keys.count(key) > 1:
            raise ValidationError(f"the same resource appears twice ({key})", source=path)
    return resources


def run_write(args: argparse.Namespace) -> int:
    from pybgp.datastore.resources import ResourceStore

    resources = load_documents(args.filename)
    store = ResourceStore(open_kv(args))
    results = store.apply(resources, create_only=args.verb == "create")
    for res, action in results:
        print(f"{res.kind} {_display_name(res)} {action}")
    return 0


def _display_name(res: Any) -> str:
    ns = res.metadata.namespace
    return f"{ns}/{res.metadata.name}" if ns else res.metadata.name


def run_get(args: argparse.Namespace) -> int:
    from pybgp.datastore.resources import ResourceStore
    from pybgp.model import lookup_kind

    info = lookup_kind(args.kind)
    namespace = None
    if info.namespaced and not args.all_namespaces:
        namespace = args.namespace or "default"
    store = ResourceStore(open_kv(args))
    items = [store.get(info, args.name, namespace)] if args.name else store.list(info, namespace)
    print(render(items, info.kind, args.output, many=not args.name), end="")
    return 0


def render(items: list[Any], kind: str, output: str, *, many: bool) -> str:
    if output in ("yaml", "json"):
        docs = [r.to_dict() for r in items]
        body: Any = {"apiVersion": "projectcalico.org/v3", "kind": f"{kind}List",
                     "items": docs} if many else docs[0]
        if output == "json":
            return json.dumps(body, indent=2) + "\n"
        import yaml

        return yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
    from pybgp.model.columns import columns

    cols = columns(kind, output == "wide")
    rows = [[h for h, _ in cols]] + [[fn(r) for _, fn in cols] for r in items]
    return format_table(rows)


def format_table(rows: list[list[str]]) -> str:
    """calicoctl's plain column layout: left-aligned, three spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join(lines) + "\n"


def run_delete(args: argparse.Namespace) -> int:
    from pybgp.datastore.resources import ResourceStore
    from pybgp.errors import NotFoundError
    from pybgp.model import lookup_kind

    store = ResourceStore(open_kv(args))
    if args.filename:
        if args.kind or args.name:
            raise ValidationError("give either -f FILE or KIND NAME, not both")
        targets: list[Any] = [
            (lookup_kind(r.kind), r.metadata.name, r.metadata.namespace, None)
            for r in load_documents(args.filename)
        ]
    elif args.kind and args.name:
        info = lookup_kind(args.kind)
        ns = (args.namespace or "default") if info.namespaced else None
        targets = [(info, args.name, ns, None)]
    else:
        raise ValidationError("delete needs KIND NAME or -f FILE")
    if args.skip_not_exists:
        present = []
        for t in targets:
            try:
                store.get(t[0], t[1], t[2])
                present.append(t)
            except NotFoundError:
                pass
        targets = present
    for res in store.delete_many(targets) if targets else []:
        print(f"{res.kind} {_display_name(res)} deleted")
    return 0
