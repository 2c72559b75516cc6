"""``Resource``: one Calico v3 object (kind, metadata, typed spec) and its codec.

:func:`parse_resource` validates a decoded JSON/YAML document strictly (as
calicoctl does: unknown fields are errors) and applies the defaults Calico
applies on create, so ``parse_resource(r.to_dict()).to_dict() == r.to_dict()``.
:func:`parse_documents` reads a YAML/JSON stream of documents or ``List``s.
Every error is a ``ValidationError`` whose ``field`` is the dotted path.
"""

from __future__ import annotations

import copy
import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pybgp.errors import ValidationError
from pybgp.model import values as v
from pybgp.model.endpoints import WorkloadEndpointSpec
from pybgp.model.kinds import API_VERSION, KINDS, KindInfo, key_for, lookup_kind
from pybgp.model.names import wep_name
from pybgp.model.schema import F, Struct, decode, encode

DEFAULT_NAMESPACE = "default"
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"


def _timestamp(value: Any, path: str) -> str:
    """RFC 3339 text; YAML may already have turned an unquoted one into a datetime."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return v.string(value, path)


@dataclass
class Metadata(Struct):
    """The subset of Kubernetes ``ObjectMeta`` Calico resources use."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    creation_timestamp: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    FIELDS = (
        F("name", "name", v.string),
        F("namespace", "namespace", v.string),
        F("uid", "uid", v.string),
        F("resourceVersion", "resource_version", v.string),
        F("creationTimestamp", "creation_timestamp", _timestamp),
        F("labels", "labels", v.label_map),
        F("annotations", "annotations", v.str_map),
    )


SpecT = TypeVar("SpecT", bound=Struct)


@dataclass
class Resource(Generic[SpecT]):
    """A Calico v3 resource.  Build one in code, then call :meth:`validated`."""

    kind: str
    metadata: Metadata
    spec: SpecT
    status: dict[str, Any] | None = None  # written by controllers; kept, never validated

    @property
    def info(self) -> KindInfo:
        return lookup_kind(self.kind)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace or None

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    def to_dict(self) -> dict[str, Any]:
        """The Calico v3 JSON object (unset optional fields omitted)."""
        out: dict[str, Any] = {"apiVersion": API_VERSION, "kind": self.kind,
                               "metadata": encode(self.metadata), "spec": encode(self.spec)}
        if self.status is not None:
            out["status"] = self.status
        return out

    def to_json(self) -> str:
        """Compact JSON, the value stored in etcd."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def etcd_key(self) -> str:
        return key_for(self.info, self.name, self.namespace)

    def validated(self) -> Resource[SpecT]:
        """A validated, defaulted copy (raises ``ValidationError``)."""
        return parse_resource(self.to_dict())


def new_resource(kind: str, name: str, spec: SpecT, *, namespace: str = "",
                 labels: dict[str, str] | None = None) -> Resource[SpecT]:
    """Convenience constructor; the result is validated and defaulted."""
    meta = Metadata(name=name, namespace=namespace, labels=dict(labels or {}))
    return Resource(lookup_kind(kind).kind, meta, spec).validated()


_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")


def parse_resource(doc: Any) -> Resource[Any]:
    """Validate one decoded document and return the typed resource."""
    doc = v.expect(doc, dict, "", "a resource object")
    for key in doc:
        if key not in _TOP_LEVEL:
            raise ValidationError("unknown field", field=str(key))
    api = doc.get("apiVersion")
    if api != API_VERSION:
        raise ValidationError(f"unsupported apiVersion {api!r} (expected '{API_VERSION}')",
                              field="apiVersion")
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValidationError(f"unknown resource kind '{kind}'", field="kind")
    info = KINDS[kind]
    meta = decode(Metadata, doc.get("metadata"), "metadata")
    spec = info.spec_cls.decode(doc.get("spec"), "spec")
    status = doc.get("status")
    if status is not None:
        v.expect(status, dict, "status", "an object")

    if info.namespaced:
        meta.namespace = meta.namespace or DEFAULT_NAMESPACE
        if not v.valid_name(meta.namespace) or "." in meta.namespace:
            raise ValidationError(f"invalid namespace '{meta.namespace}'",
                                  field="metadata.namespace")
    elif meta.namespace:
        raise ValidationError(f"{kind} is not namespaced (got namespace '{meta.namespace}')",
                              field="metadata.namespace")
    if isinstance(spec, WorkloadEndpointSpec):
        _finish_wep(meta, spec)
    info.check_name(meta.name)
    if kind == "ClusterInformation" and meta.name != "default":
        raise ValidationError(f"ClusterInformation must be named 'default', not '{meta.name}'",
                              field="metadata.name")
    return Resource(kind, meta, spec, copy.deepcopy(status))


def _finish_wep(meta: Metadata, spec: WorkloadEndpointSpec) -> None:
    """Name and labels as libcalico-go sets them when a WorkloadEndpoint is stored."""
    expected = wep_name(spec.node, spec.orchestrator, spec.pod, spec.endpoint,
                        workload=spec.workload, container_id=spec.container_id)
    if not meta.name:
        meta.name = expected
    elif meta.name != expected:
        raise ValidationError(f"name '{meta.name}' does not match the spec's identifiers "
                              f"(expected '{expected}')", field="metadata.name")
    meta.labels = {**meta.labels, LABEL_NAMESPACE: meta.namespace,
                   LABEL_ORCHESTRATOR: spec.orchestrator}


def parse_json(text: str | bytes) -> Resource[Any]:
    """Parse one resource from its JSON text (an etcd value)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"invalid JSON: {exc}") from None
    return parse_resource(doc)


def parse_documents(text: str, source: str = "<input>") -> list[Resource[Any]]:
    """Every resource in a YAML/JSON stream; ``kind: List`` / ``<Kind>List`` are expanded.

    Errors are located as ``<source>: document N (Kind name)`` (1-based),
    with ``item M`` inside a List.
    """
    import yaml  # here: the daemons never parse YAML (~1.2 MiB of each process)

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ValidationError(f"invalid YAML: {_yaml_problem(exc)}", source=source) from None
    out: list[Resource[Any]] = []
    for n, doc in enumerate(docs, 1):
        where = f"{source}: document {n}"
        kind = doc.get("kind") if isinstance(doc, dict) else None
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None
        if isinstance(kind, str) and isinstance(name, str) and not kind.endswith("List"):
            where += f" ({kind} {name})"
        if isinstance(kind, str) and kind.endswith("List"):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ValidationError("expected a list", field="items", source=where)
            for m, item in enumerate(items, 1):
                out.append(_located(item, f"{where} item {m}"))
        else:
            out.append(_located(doc, where))
    return out


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's problem and position, without its multi-line context dump."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _located(doc: Any, where: str) -> Resource[Any]:
    try:
        return parse_resource(doc)
    except ValidationError as exc:
        raise exc.located(where) from None
