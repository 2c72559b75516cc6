"""The ExaBGP launcher: same callbacks, same results, and no asyncio loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pybgp.speaker import exabgp_main


def run_fresh(code: str, *args: str) -> str:
    """Run ``code`` in a new interpreter (this one has asyncio loaded already)."""
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_exabgp_runs_without_asyncio_ssl_or_libcrypto() -> None:
    out = run_fresh("""
        import sys
        from pybgp.speaker import exabgp_main
        assert exabgp_main.patch()
        import exabgp.application.main, exabgp.reactor.loop, exabgp.reactor.api
        import exabgp.configuration.configuration
        print(sorted(m for m in ("asyncio", "ssl", "_hashlib") if m in sys.modules))
    """)
    assert out.strip() == "[]"


def test_generator_callbacks_run_as_stock_exabgp_runs_them() -> None:
    """The same queue through ExaBGP's own ASYNC.run and through the
    launcher's: the same steps in the same order, the same return values."""
    out = run_fresh("""
        from pybgp.speaker import exabgp_main
        from exabgp.environment import getenv
        from exabgp.logger.option import option
        from exabgp.reactor.asynchronous import ASYNC
        option.setup(getenv())  # ExaBGP's logger, as its main sets it up

        def drive(run):
            a, log, results = ASYNC(), [], []
            def gen(name, n):
                for i in range(n):
                    log.append((name, i))
                    yield
            for name, n in (("a", 3), ("b", 70), ("c", 0), ("d", 5)):
                a._async.append((name, gen(name, n)))  # schedule() minus its log line
            while not a.ready():
                results.append(run(a))
            results.append(run(a))
            return log, results

        stock = drive(ASYNC.run)
        assert exabgp_main.patch() and ASYNC.run is exabgp_main.run_callbacks
        print(drive(ASYNC.run) == stock, len(stock[0]), stock[1])
    """)
    same, steps, results = out.split(" ", 2)
    assert same == "True" and steps == "78"
    # 78 steps, at most 50 a call (ASYNC.LIMIT): more work, then done, then idle
    assert results.strip() == "[True, False, False]"


def test_a_queued_coroutine_goes_through_exabgp_s_own_code() -> None:
    out = run_fresh("""
        from pybgp.speaker import exabgp_main
        from exabgp.environment import getenv
        from exabgp.logger.option import option
        from exabgp.reactor.asynchronous import ASYNC
        option.setup(getenv())  # ExaBGP's logger, as its main sets it up
        assert exabgp_main.patch() and exabgp_main.patch()  # twice: still ExaBGP's own run
        a, log = ASYNC(), []
        async def co():
            log.append("coroutine")
        a._async.append(("x", co()))  # schedule() minus its log line
        a.run()
        print(log)
    """)
    assert out.strip() == "['coroutine']"


def test_other_exabgp_releases_run_unchanged(monkeypatch) -> None:
    import exabgp.version

    monkeypatch.setattr(exabgp.version, "version", "6.0.0")
    assert exabgp_main.patch() is False


def _parts(*codes: str) -> str:
    return "\n".join(textwrap.dedent(c) for c in codes)


# A reactor with two neighbours (different local addresses), loaded from a
# configuration the speaker renders, without starting anything.
_REACTOR = """
    import json, os, sys
    from pybgp.speaker import exabgp_api as exa
    conf = os.path.join(sys.argv[1], "exabgp.conf")
    neighbors = [exa.NeighborConfig(
        address=peer, local_address=local, router_id="198.18.0.11", local_as=64512,
        peer_as=64512, passive=False, md5_password=None, graceful_restart=120, port=179,
        listen_port=179, description=name)
        for name, peer, local in (("Mesh_198_18_0_12", "198.18.0.12", "198.18.0.11"),
                                  ("Global_198_18_1_1", "198.18.1.1", "198.18.1.11"))]
    with open(conf, "w") as fh:
        fh.write(exa.render_config(neighbors, ["/bin/true"], manual_eor=True))
    os.environ.update({"exabgp.log.destination": os.path.join(sys.argv[1], "log"),
                       "exabgp.daemon.user": "root"})
    from exabgp.environment import getenv
    from exabgp.logger.option import option
    option.setup(getenv())
    from exabgp.configuration.configuration import Configuration
    from exabgp.reactor.loop import Reactor
    reactor = Reactor(Configuration([conf]))
    assert reactor.reload()
    api, peers = reactor.api, list(reactor.configuration.neighbors)
"""

# What makes two changes the same to ExaBGP: everything it reads of them.
_DESCRIBE = """
    def describe(change):
        nlri = change.nlri
        return (type(nlri).__name__, repr(nlri.afi), repr(nlri.safi), repr(nlri.action),
                str(nlri.nexthop), type(nlri.nexthop).__name__, nlri.cidr.pack_nlri(),
                change.extensive(), change.index(), change.attributes.index(),
                [(code, repr(value)) for code, value in sorted(change.attributes.items())],
                nlri.path_info.json())
"""

_COMMANDS = [
    "announce attributes next-hop self origin igp nlri 198.19.0.0/26",
    "announce attributes next-hop self origin igp nlri 198.19.0.64/26 198.19.3.7/32",
    "announce attributes next-hop self origin igp nlri 198.19.0.128/26",
    "announce attributes next-hop 198.18.0.11 origin igp local-preference 100 nlri 198.19.9.0/26",
    "announce attributes next-hop 198.18.0.11 origin igp local-preference 100 nlri 198.19.9.64/26",
    "announce attributes next-hop self origin igp community [ 64512:1 64512:2 ] "
    "nlri 198.19.4.0/26 198.19.4.64/26",
    "announce attributes next-hop self origin igp community [ 64512:1 64512:2 ] nlri 198.19.5.0/26",
    "announce attributes next-hop self origin igp nlri 2001:db8::/122",
    "announce attributes next-hop self origin igp nlri 2001:db8::40/122 2001:db8::1/128",
    "announce attributes next-hop self origin igp label 20 nlri 198.19.6.0/26",
    "announce attributes next-hop self origin igp nlri 198.19.7.0/26 not-a-prefix",
]


def test_announcements_parse_to_what_exabgp_s_parser_makes(tmp_path) -> None:
    """Every command through ExaBGP's parser and through the launcher's
    (twice: the second time from what it kept of the first): the same
    changes, one attributes object per command shared by its prefixes."""
    out = run_fresh(_parts(_REACTOR, _DESCRIBE, """
        from pybgp.speaker import exabgp_main
        commands = json.loads(sys.argv[2])
        def run():
            made = []
            for command in commands:
                try:
                    changes = api.api_attributes(command, peers)
                except Exception as exc:
                    made.append(("error", type(exc).__name__))
                    continue
                made.append(([describe(c) for c in changes],
                             len({id(c.attributes) for c in changes}),
                             [c.attributes for c in changes]))
            return made
        stock = run()
        assert exabgp_main.patch()
        first, second = run(), run()
        same = [s[:2] == f[:2] == t[:2] for s, f, t in zip(stock, first, second)]
        fresh = [f[2][0] is not t[2][0] for f, t in zip(first, second) if f[0] != "error" and f[0]]
        print(same.count(True), len(same), all(fresh),
              sum(s[0] != "error" and bool(s[0]) for s in stock))
    """), str(tmp_path), json.dumps(_COMMANDS))
    same, total, fresh, parsed = out.split()
    assert same == total == str(len(_COMMANDS))
    assert fresh == "True"  # a command's attributes are its own, not the last command's
    assert int(parsed) >= 9  # the corpus was parsed, not refused


def test_next_hop_self_gives_each_neighbour_its_address(tmp_path) -> None:
    """The same changes injected for two neighbours through ExaBGP's
    remove_self and the launcher's: the same per-neighbour changes (each
    with its own local address as next hop) and the original untouched."""
    out = run_fresh(_parts(_REACTOR, _DESCRIBE, """
        from pybgp.speaker import exabgp_main
        from exabgp.bgp.message import Action
        commands = ["announce attributes next-hop self origin igp nlri 198.19.0.0/26",
                    "announce attributes next-hop 198.18.0.11 origin igp nlri 198.19.1.0/26",
                    "announce attributes next-hop self origin igp nlri 2001:db8::/122"]
        def run():
            made = []
            for command in commands:
                for change in api.api_attributes(command, peers):
                    change.nlri.action = Action.ANNOUNCE
                    before = describe(change)
                    per_neighbor = []
                    for p in peers:
                        try:
                            per_neighbor.append(describe(
                                reactor.configuration.neighbors[p].remove_self(change)))
                        except TypeError as exc:  # next-hop self, IPv6 route, IPv4 session
                            per_neighbor.append(("error", str(exc)))
                    made.append((per_neighbor, describe(change) == before))
            return made
        stock = run()
        assert exabgp_main.patch()
        patched = run()
        hops = sorted({d[4] for per, _ in patched for d in per if d[0] != "error"})
        print(stock == patched, all(kept for _, kept in patched), hops)
    """), str(tmp_path))
    assert out.startswith("True True ")
    assert "198.18.0.11" in out and "198.18.1.11" in out  # each neighbour's own address


def test_listener_accepts_what_exabgp_accepts_and_skips_the_failing_tries() -> None:
    """ExaBGP's Listener.incoming and the launcher's, on the same listening
    sockets: nothing waiting, then a connection waiting on one of two."""
    out = run_fresh("""
        import socket
        from exabgp.environment import getenv
        from exabgp.logger.option import option
        option.setup(getenv())
        from exabgp.reactor.listener import Listener
        from pybgp.speaker import exabgp_main

        def listener():
            listen = Listener.__new__(Listener)
            socks = []
            for _ in range(2):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                s.listen(4)
                s.setblocking(False)
                socks.append(s)
            listen.serving, listen._accepted = True, {}
            listen._sockets = {s: ("127.0.0.1", s.getsockname()[1], None, False) for s in socks}
            return listen, socks

        def story(listen, socks):
            told = [listen.incoming()]
            client = socket.create_connection(socks[1].getsockname())
            told += [listen.incoming(), listen.incoming()]  # accepted once, then held
            accepted = sorted(socks.index(s) for s in listen._accepted)
            client.close()
            return told, accepted

        stock = story(*listener())
        assert exabgp_main.patch()
        patched = story(*listener())
        print(stock == patched, patched)
    """)
    assert out.strip() == "True ([False, True, False], [1])"


# UPDATE bodies (after the 19-byte header) as a peer sends them, well and
# badly formed; built in the fresh interpreter (struct only).
_BODIES = """
    import struct
    def attr(flag, code, value):
        return bytes([flag, code, len(value)]) + value
    def prefixes(*items):
        out = b""
        for text in items:
            addr, _, mask = text.partition("/")
            raw = bytes(int(o) for o in addr.split("."))
            out += bytes([int(mask)]) + raw[:(int(mask) + 7) // 8]
        return out
    def body(withdrawn=b"", attributes=b"", announced=b""):
        return (struct.pack("!H", len(withdrawn)) + withdrawn
                + struct.pack("!H", len(attributes)) + attributes + announced)
    ORIGIN = attr(0x40, 1, b"\\0")
    AS_PATH = attr(0x40, 2, b"\\x02\\x01" + struct.pack("!I", 64513))
    HOP = attr(0x40, 3, bytes([198, 18, 0, 254]))
    MORE = attr(0x80, 4, struct.pack("!I", 7)) + attr(0x40, 5, struct.pack("!I", 200)) \\
        + attr(0xC0, 8, struct.pack("!II", 64512 << 16 | 1, 64512 << 16 | 2))
    V6 = bytes.fromhex("20010db8" + "00" * 12)
    MP_REACH = attr(0x80, 14, b"\\0\\x02\\x01\\x10" + V6 + b"\\0" + bytes([122]) + V6[:16])
    MP_UNREACH_EMPTY = attr(0x80, 15, b"\\0\\x02\\x01")
    BASE = ORIGIN + AS_PATH + HOP
    BODIES = {
        "announce": body(attributes=BASE, announced=prefixes(
            "198.19.1.0/32", "198.19.0.64/26", "10.0.0.0/8", "0.0.0.0/0", "198.19.2.128/25")),
        "withdraw only": body(withdrawn=prefixes("198.19.1.0/32", "198.19.0.64/26")),
        "withdraw and announce": body(withdrawn=prefixes("198.19.1.1/32"), attributes=BASE + MORE,
                                      announced=prefixes("198.19.1.2/32", "198.19.1.3/32")),
        "no next hop": body(attributes=ORIGIN + AS_PATH, announced=prefixes("198.19.1.4/32")),
        "end of rib": body(),
        "ipv6 and ipv4": body(attributes=BASE + MP_REACH, announced=prefixes("198.19.3.0/26")),
        "ipv6 end of rib": body(attributes=MP_UNREACH_EMPTY),
        "eleven bytes": body(announced=prefixes("198.19.1.5/32", "10.0.0.0/8"))[:11],
        "mask 33": body(attributes=BASE,
                        announced=prefixes("198.19.1.6/32") + b"\\x21" + bytes(5)),
        "cut short": body(attributes=BASE,
                          announced=prefixes("198.19.1.7/32") + b"\\x18\\xc6\\x13"),
        "withdrawn cut short": body(withdrawn=b"\\x20\\xc6", attributes=BASE,
                                    announced=prefixes("198.19.1.8/32")),
    }
"""

# Everything ExaBGP keeps of a decoded UPDATE, and the JSON line it writes.
_DECODE = """
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.message.update import Update
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.reactor.api.response import Response
    from exabgp.version import json as json_version
    neighbor = reactor.configuration.neighbors[peers[0]]
    def negotiated(addpath):
        neg = Negotiated(neighbor)
        neg.asn4 = True
        neg.families = [(AFI.ipv4, SAFI.unicast), (AFI.ipv6, SAFI.unicast)]
        if addpath:
            neg.addpath._receive[(AFI.ipv4, SAFI.unicast)] = True
        return neg
    def describe_nlri(n):
        if not hasattr(n, "cidr"):  # End-of-RIB
            return (type(n).__name__, repr(n.afi), repr(n.safi), repr(n.action), n.json())
        return (type(n).__name__, list(n.__dict__), repr(n.afi), repr(n.safi), repr(n.action),
                str(n.nexthop), type(n.nexthop).__name__, n.cidr.pack_nlri(), n.path_info.json(),
                n.index())
    def decode(data, addpath=False):
        try:
            update = Update.unpack_message(data, Direction.IN, negotiated(addpath))
        except Exception as exc:
            return ("error", type(exc).__name__, str(exc)), None
        nlris = [describe_nlri(n) for n in getattr(update, "nlris", [])]
        attributes = sorted((code, repr(v))
                            for code, v in getattr(update, "attributes", {}).items())
        texts = []
        for compact in (False, True):
            encoder = Response.JSON(json_version)
            encoder.compact = compact
            texts.append(str(encoder._update(update)))
        return (type(update).__name__, nlris, attributes, texts), update
    def decode_all():
        return {(name, addpath): decode(data, addpath)[0] for name, data in BODIES.items()
                for addpath in (False, True)}
"""


def test_received_updates_decode_and_encode_as_exabgp_s_own_code(tmp_path) -> None:
    """Every body through ExaBGP's decoder and JSON encoder, then through the
    launcher's: the same objects (class, fields and their order, attributes),
    the same JSON in both encodings, the same errors for malformed NLRIs."""
    out = run_fresh(_parts(_REACTOR, _BODIES, _DECODE, """
        from pybgp.speaker import exabgp_main, exabgp_receive
        stock = decode_all()
        assert exabgp_main.patch()
        assert Update.unpack_message.__func__ is exabgp_receive.unpack_message
        patched = decode_all()
        differ = [name for name in stock if stock[name] != patched[name]]
        errors = {name for (name, addpath), got in stock.items()
                  if got[0] == "error" and not addpath}
        routes = sum(len(got[1]) for got in stock.values() if got[0] == "Update")
        print(json.dumps([differ, sorted(errors), routes]))
    """), str(tmp_path))
    differ, errors, routes = json.loads(out)
    assert differ == []
    # the corpus reached the decoder's error paths (without ADD-PATH) and its routes
    assert errors == ["cut short", "mask 33", "withdrawn cut short"]
    assert routes >= 15


def test_exabgp_s_own_code_decodes_when_its_route_debugging_is_on(tmp_path) -> None:
    """With ExaBGP's ``routes``/``parser`` debug logging on, its own decoder
    runs: the log holds the same per-prefix lines as without the launcher."""
    out = run_fresh(_parts("""
        import os
        os.environ.update({"exabgp.log.level": "DEBUG", "exabgp.log.routes": "true",
                           "exabgp.log.parser": "true"})
    """, _REACTOR, _BODIES, _DECODE, """
        def logged():
            with open(os.path.join(sys.argv[1], "log")) as fh:
                return [line.split(" | ", 1)[-1] for line in fh if "NLRI" in line]
        decode(BODIES["withdraw and announce"])
        stock = logged()
        from pybgp.speaker import exabgp_main
        assert exabgp_main.patch()
        decode(BODIES["withdraw and announce"])
        both = logged()
        print(len(stock), both == stock + stock)
    """), str(tmp_path))
    count, same = out.split()
    assert int(count) >= 3 and same == "True"


def test_the_speaker_reads_exabgp_s_compact_json_as_its_full_json(tmp_path) -> None:
    """Received UPDATEs encoded by ExaBGP (stock, and through the launcher)
    with ``exabgp.api.compact`` on and off: the speaker's codec makes the
    same events of both."""
    out = run_fresh(_parts(_REACTOR, _BODIES, _DECODE, """
        from pybgp.speaker import exabgp_api, exabgp_main
        def events():
            got = []
            for name in ("announce", "withdraw only", "withdraw and announce", "ipv6 and ipv4"):
                update = decode(BODIES[name])[1]
                lines = []
                for compact in (False, True):
                    encoder = Response.JSON(json_version)
                    encoder.compact = compact
                    lines.append(encoder.update(neighbor, "receive", update, None, "", ""))
                full, compact = (exabgp_api.parse_message(line) for line in lines)
                got.append((full == compact, '{ "nlri"' in lines[0], '{ "nlri"' in lines[1],
                            len(full.announces) + len(full.withdraws)))
            return got
        stock = events()
        assert exabgp_main.patch()
        print(json.dumps([stock, events()]))
    """), str(tmp_path))
    stock, patched = json.loads(out)
    assert stock == patched
    assert all(same and full and not compact for same, full, compact, _ in stock)
    assert [n for *_, n in stock] == [5, 2, 3, 2]
