"""CNI spec handling without root: environment, config, results, errors."""

import json

import pytest

from pybgp.cni import client, entry, spec

CONF = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "pybgp-cni",
        "ipam": {"type": "pybgp-ipam"}}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/var/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
       "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"}


def req(env=None, conf=None, **overrides):
    e = dict(ENV if env is None else env, **overrides)
    return spec.parse_request(e, json.dumps(CONF if conf is None else conf))


def code_of(fn):
    with pytest.raises(spec.CNIError) as info:
        fn()
    return info.value.code


def test_parse_add():
    r = req()
    assert (r.command, r.container_id, r.ifname, r.pod_namespace, r.pod_name) == (
        "ADD", "abc123", "eth0", "default", "web-0")
    assert r.path == ["/opt/cni/bin", "/usr/lib/cni"]
    assert spec.Request.from_wire(json.loads(json.dumps(r.to_wire()))).to_wire() == r.to_wire()


@pytest.mark.parametrize("overrides", [
    {"CNI_COMMAND": "FROB"},
    {"CNI_CONTAINERID": ""},
    {"CNI_CONTAINERID": "-bad"},
    {"CNI_IFNAME": "a" * 16},
    {"CNI_IFNAME": "et/h0"},
    {"CNI_IFNAME": "eth 0"},
    {"CNI_NETNS": ""},
    {"CNI_ARGS": "K8S_POD_NAME"},
])
def test_bad_environment_is_code_4(overrides):
    assert code_of(lambda: req(**overrides)) == spec.INVALID_ENVIRONMENT


def test_del_needs_no_netns():
    assert req(CNI_COMMAND="DEL", CNI_NETNS="").netns == ""


def test_decode_and_config_errors():
    assert code_of(lambda: spec.parse_request(ENV, b"{nope")) == spec.DECODE_FAILURE
    assert code_of(lambda: spec.parse_request(ENV, b"")) == spec.DECODE_FAILURE
    assert code_of(lambda: req(conf={**CONF, "cniVersion": "9.9.9"})) == spec.INCOMPATIBLE_VERSION
    assert code_of(lambda: req(conf={**CONF, "name": ""})) == spec.INVALID_CONFIG
    assert code_of(lambda: req(conf={**CONF, "mtu": 10})) == spec.INVALID_CONFIG
    assert code_of(lambda: req(conf={**CONF, "ipam": {}})) == spec.INVALID_CONFIG


def test_version_command():
    status, out = entry.process({"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.4.0"}', None)
    assert status == 0
    assert out == {"cniVersion": "0.4.0", "supportedVersions": spec.SUPPORTED_VERSIONS}
    status, out = entry.process({"CNI_COMMAND": "VERSION"}, b"", None)
    assert out["cniVersion"] == spec.LATEST


def test_error_json_on_failure():
    status, out = entry.process({**ENV, "CNI_IFNAME": ""}, json.dumps(CONF).encode(), None)
    assert status == 1
    assert out["code"] == spec.INVALID_ENVIRONMENT and out["cniVersion"] == "1.0.0"
    assert "CNI_IFNAME" in out["msg"]


def test_client_finds_no_daemon(tmp_path):
    assert client.exchange(str(tmp_path / "absent.sock"), b"x") is None


def test_client_socket_path_from_config_env_or_default():
    conf = json.dumps({**CONF, "daemon_socket": "/run/x/cni.sock"}).encode()
    assert client.socket_path(conf, {}) == "/run/x/cni.sock"
    assert client.socket_path(json.dumps(CONF).encode(), {b"PYBGP_CNI_SOCKET": b"/e"}) == "/e"
    assert client.socket_path(json.dumps(CONF).encode(), {}) == client.DEFAULT_SOCKET
    # a path only a JSON parser can read sends the request down the full path
    assert client.socket_path(b'{"daemon_socket": "/a\\u0062"}', {}) is None


def benv(env):
    """An environment as the client sees it: bytes, as the kernel gives it."""
    return {k.encode(): v.encode() for k, v in env.items()}


def test_client_wire_round_trip():
    env = {**ENV, "HOME": "/root", "PYBGP_CNI_SOCKET": "/s"}
    data = client.encode(benv(env), json.dumps(CONF).encode())
    got_env, got_stdin = client.decode(data)
    assert got_env == {k: v for k, v in env.items() if k != "HOME"}
    assert json.loads(got_stdin) == CONF
    with pytest.raises(ValueError):
        client.decode(data[:-1])


def test_daemon_answers_like_the_plugin(tmp_path):
    from pybgp.cni.daemon import CNIDaemon

    path = str(tmp_path / "cni.sock")
    server = CNIDaemon(path)
    server.serve_in_thread()
    try:
        status, out = client.exchange(path, client.encode(
            {b"CNI_COMMAND": b"VERSION"}, b'{"cniVersion":"0.4.0"}'))
        assert status == 0 and json.loads(out)["cniVersion"] == "0.4.0"
        status, out = client.exchange(path, client.encode(
            benv({**ENV, "CNI_IFNAME": ""}), json.dumps(CONF).encode()))
        assert status == 1 and json.loads(out)["code"] == spec.INVALID_ENVIRONMENT
        status, out = client.exchange(path, b"junk\n")
        assert status == 1 and json.loads(out)["code"] == spec.DECODE_FAILURE
    finally:
        server.shutdown()
        server.server_close()


def test_client_waits_while_the_daemon_backlog_is_full(tmp_path):
    """A burst of pod starts fills the accept queue: the plugin waits, it does not fail."""
    import socket
    import threading

    path = str(tmp_path / "busy.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    for _ in range(8):  # until the kernel refuses more: the queue is full
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            break
        s.send(b"fill")
        fillers.append(s)
    else:
        raise AssertionError("the listener's queue never filled")
    got: list = []
    t = threading.Thread(target=lambda: got.append(client.exchange(path, b"req")))
    t.start()
    try:
        t.join(0.2)
        assert t.is_alive() and not got  # still waiting for room in the queue
        for _ in range(len(fillers) + 1):  # drain: the fillers, then our client
            conn, _ = listener.accept()
            conn.settimeout(5)
            if conn.recv(16) == b"req":
                conn.sendall(b"0\nanswer")
            conn.close()
        t.join(5)
        assert got == [(0, b"answer")]
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_result_versions():
    result = {
        "interfaces": [{"name": "cali1", "mac": "ee:ee:ee:ee:ee:ee", "mtu": 1500},
                       {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
        "ips": [{"address": "198.19.0.5/32", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
    }
    old = spec.format_result(result, "0.3.1")
    assert old["ips"][0]["version"] == "4" and "mtu" not in old["interfaces"][0]
    new = spec.format_result(result, "1.1.0")
    assert "version" not in new["ips"][0] and new["interfaces"][0]["mtu"] == 1500
    assert new["cniVersion"] == "1.1.0" and new["dns"] == {}
