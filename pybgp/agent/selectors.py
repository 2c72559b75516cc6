"""Selectors as the agent uses them: Calico's v3 → v1 rewriting and ipset names.

libcalico-go hands Felix *v1* selectors: a namespaced NetworkPolicy's
selector gets ``&& projectcalico.org/namespace == '<ns>'``, a
``namespaceSelector`` has every label prefixed with ``pcns.`` (and ``all()``
/ ``global()`` become "in some namespace" / "in none"), a service account
selector gets ``pcsa.``. This module does that rewriting on the parsed AST of
:mod:`pybgp.model.selector` (the one parser), and names the ipset that holds
the addresses a selector matches: ``cali40s:`` + 23 characters of the
URL-safe base64 SHA-224 of the canonical selector text (31 characters, the
kernel's limit), so identical selectors share one set; ``cali40n:`` for a
set of nets and ``cali40p:`` for a named port work the same way.

Pure: no I/O, no state beyond the parser's cache.
"""

from __future__ import annotations

import base64
import hashlib

from pybgp.model.selector import All, And, Compare, Global, Has, In, Not, Or, Selector, parse

LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
#: The namespace's own name, as Calico's namespace profiles apply it.
NAMESPACE_NAME_LABEL = "pcns.projectcalico.org/name"
IPSET_PREFIX = "cali40"
MAX_IPSET_NAME = 31


def prefixed(sel: Selector, prefix: str) -> Selector:
    """``sel`` with ``prefix`` put in front of every label it names."""
    if isinstance(sel, Has):
        return Has(prefix + sel.label)
    if isinstance(sel, Compare):
        return Compare(prefix + sel.label, sel.op, sel.value)
    if isinstance(sel, In):
        return In(prefix + sel.label, sel.values, sel.negated)
    if isinstance(sel, Not):
        return Not(prefixed(sel.operand, prefix))
    if isinstance(sel, And):
        return And(tuple(prefixed(op, prefix) for op in sel.operands))
    if isinstance(sel, Or):
        return Or(tuple(prefixed(op, prefix) for op in sel.operands))
    return sel  # all(), global()


def _namespaces_only(sel: Selector, label: str = LABEL_NAMESPACE) -> Selector:
    """A rule's namespaceSelector: ``all()`` = any namespace, ``global()`` = none
    (with ``label`` the service account label: the same for service accounts)."""
    if isinstance(sel, All):
        return Has(label)
    if isinstance(sel, Global):
        return Not(Has(label))
    if isinstance(sel, Not):
        return Not(_namespaces_only(sel.operand, label))
    if isinstance(sel, And):
        return And(tuple(_namespaces_only(op, label) for op in sel.operands))
    if isinstance(sel, Or):
        return Or(tuple(_namespaces_only(op, label) for op in sel.operands))
    return sel


def both(a: Selector | None, b: Selector | None) -> Selector | None:
    """``a && b`` (either may be absent)."""
    if a is None:
        return b
    if b is None:
        return a
    return And((a, b))


def in_namespace(namespace: str) -> Selector:
    return Compare(LABEL_NAMESPACE, "==", namespace)


def service_accounts(names: list[str], selector: str) -> Selector | None:
    """A rule's ``serviceAccounts`` match (names and/or a ``pcsa.`` selector)."""
    parts: list[Selector] = []
    if names:
        parts.append(In(LABEL_SERVICE_ACCOUNT, frozenset(names)))
    if selector:
        parts.append(prefixed(parse(selector), SERVICE_ACCOUNT_PREFIX))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def entity_selector(namespace_selector: str, selector: str, sa: Selector | None,
                    not_selector: str, namespace: str) -> Selector | None:
    """The positive selector of a rule's source or destination, as
    libcalico-go's ``GetEntityRuleSelector`` builds it: the rule's selector
    (and service accounts), limited to the policy's namespace — or to the
    namespaces ``namespace_selector`` picks — once any selector is used."""
    ns_sel: Selector | None = None
    if namespace_selector:
        ns_sel = _namespaces_only(prefixed(parse(namespace_selector), NAMESPACE_PREFIX))
    elif namespace:
        ns_sel = in_namespace(namespace)
    sel = both(sa, parse(selector) if selector else None)
    if ns_sel is not None and (sel is not None or not_selector or namespace_selector):
        return both(ns_sel, sel)
    return sel


def policy_selector(selector: str, *, namespace: str = "", namespace_selector: str = "",
                    service_account_selector: str = "") -> Selector:
    """Which endpoints a policy applies to (Calico's v1 policy selector). For
    a GlobalNetworkPolicy (no ``namespace``) libcalico-go reads ``all()`` in
    its namespaceSelector as "in some namespace" and in its
    serviceAccountSelector as "has a service account"."""
    sel: Selector = parse(selector) if selector else All()
    if namespace:
        sel = And((sel, in_namespace(namespace)))
    if namespace_selector:
        ns_sel = prefixed(parse(namespace_selector), NAMESPACE_PREFIX)
        sel = And((sel, ns_sel if namespace else _namespaces_only(ns_sel)))
    if service_account_selector:
        sa_sel = prefixed(parse(service_account_selector), SERVICE_ACCOUNT_PREFIX)
        sel = And((sel, sa_sel if namespace else _namespaces_only(sa_sel, LABEL_SERVICE_ACCOUNT)))
    return sel


def digest(text: str, length: int) -> str:
    """``length`` characters of the URL-safe base64 SHA-224 of ``text``."""
    raw = hashlib.sha224(text.encode()).digest()
    return base64.urlsafe_b64encode(raw).decode()[:length]


def ipset_name(kind: str, canonical: str) -> str:
    """``cali40<kind>:<hash>``: kind ``s`` for a selector, ``n`` for a list of nets."""
    head = f"{IPSET_PREFIX}{kind}:"
    return head + digest(canonical, MAX_IPSET_NAME - len(head))


def selector_set(sel: Selector) -> str:
    return ipset_name("s", str(sel))


def nets_set(nets: tuple[str, ...]) -> str:
    return ipset_name("n", ",".join(sorted(nets)))


def named_port_set(sel: Selector, proto: str, port_name: str) -> str:
    """The ``hash:ip,port`` set of a named port (``cali40p:``): Felix's id is
    the selector, the protocol and the name, so identical ones are shared."""
    return ipset_name("p", f"{sel},{proto},{port_name}")
