"""Shared pytest fixtures: a real etcd per session, namespace topologies, root guard.

Owns: the session's run id (in every namespace name this session creates), the
`etcd_server` / `etcd` / `topology` fixtures, the rule that tests under
tests/root are marked `root`, and the end-of-session sweep of namespaces that
carry this session's run id.

Must never: skip for a missing prerequisite (no root, no etcd, no `ip`): that is
a failure, so CI cannot go green without running the real tests; or remove
anything that does not carry this session's run id.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybgp.testing.etcd import EtcdError, EtcdServer
from pybgp.testing.names import make_run_id
from pybgp.testing.netns import Topology, leftover_namespaces, remove_namespaces

SESSION_RUN_ID = make_run_id()
TOPOLOGY_PREFIX = f"pbt{SESSION_RUN_ID}"  # namespaces: pbt<session>-<topology>-<name>
SESSION_MARKER = f"{TOPOLOGY_PREFIX}-"
ROOT_TESTS = Path(__file__).parent / "root"


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (network namespaces); run the tests as root, as "
                    ".ci/run does. A root test that cannot run is a failure, not a skip.",
                    pytrace=False)


def _require_binary(name: str, package: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name!r} not found on PATH: install the Debian package {package}",
                    pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ROOT_TESTS in item.path.parents:
            item.add_marker(pytest.mark.root)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        _require_root(f"{item.nodeid} (marked root)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return
    left = leftover_namespaces(SESSION_MARKER)
    if not left:
        return
    errors = remove_namespaces(left)
    msg = f"pybgp harness: removed leftover namespaces of this session: {', '.join(left)}"
    if errors:
        msg += f"\n  errors: {'; '.join(errors)}"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(msg, red=True)
    else:
        print(msg)


@pytest.fixture(scope="session")
def session_run_id() -> str:
    """The run id in every namespace name this session creates."""
    return SESSION_RUN_ID


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """One real etcd (127.0.0.1, free ports, tmpfs data dir) for the whole session."""
    _require_binary("etcd", "etcd-server")
    try:
        server = EtcdServer(name=f"pybgp-test-{SESSION_RUN_ID}")
    except EtcdError as exc:
        pytest.fail(f"could not start etcd: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> EtcdServer:
    """The session's etcd, running and empty (all keys deleted) at the start of the test."""
    if not etcd_server.running:  # a previous test stopped or killed it
        etcd_server.start()
    etcd_server.wipe()
    return etcd_server


@pytest.fixture
def topology() -> Iterator[Topology]:
    """An empty namespace topology for this test, removed at teardown even on failure."""
    _require_root("the topology fixture")
    _require_binary("ip", "iproute2")
    topo = Topology(prefix=TOPOLOGY_PREFIX)
    try:
        yield topo
    finally:
        topo.close()
