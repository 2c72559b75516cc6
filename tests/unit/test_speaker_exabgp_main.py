"""The ExaBGP launcher: same callbacks, same results, and no asyncio loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from pybgp.speaker import exabgp_main


def run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (this one has asyncio loaded already)."""
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60)
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
