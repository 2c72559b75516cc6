"""The speaker process's own settings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# After a 16 MiB block was freed, is a new 8 MiB block on the heap (glibc's
# default: the threshold rose to 16 MiB) or mmapped on its own?
_PROBE = textwrap.dedent("""
    import ctypes, sys
    from pybgp.cli.speaker import fixed_mmap_threshold
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    took = fixed_mmap_threshold() if sys.argv[1] == "fixed" else None
    libc.free(libc.malloc(16 << 20))
    block = libc.malloc(8 << 20)  # more than the heap has free: it grows, or not
    for line in open("/proc/self/maps"):
        span, *rest = line.split()
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= block < hi:
            print(took, "heap" if rest[-1] == "[heap]" else "own mapping")
""")


def probe(mode: str) -> str:
    res = subprocess.run([sys.executable, "-c", _PROBE, mode],
                         capture_output=True, text=True, timeout=60, check=True)
    return res.stdout.strip()


def test_big_blocks_stay_off_the_heap_after_a_bigger_one_was_freed() -> None:
    assert probe("default") == "None heap"  # glibc's dynamic threshold
    assert probe("fixed") == "True own mapping"



def test_a_daemon_command_imports_only_its_own_cli_module() -> None:
    """``pybgp speaker`` (and the other daemons) must not load every CLI
    module: the lab's alone pulled ~6 MiB into each speaker (fib_learn)."""
    code = textwrap.dedent("""
        import json, sys
        from pybgp.cli.main import build_parser
        for cmd in ("speaker", "agent", "reflector"):
            build_parser(cmd)
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("pybgp.cli."))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == ["pybgp.cli.agent", "pybgp.cli.main", "pybgp.cli.reflector",
                               "pybgp.cli.speaker"]
    # with no command named, the whole CLI is one parser (pybgp --help)
    from pybgp.cli.main import build_parser

    help_text = build_parser().format_help()
    assert all(cmd in help_text for cmd in ("lab", "speaker", "agent", "reflector", "show"))
