"""The loader's concurrency model (docs/data-path.md): getters polled from other threads never
hang a loader reading remote shards, the loader cannot be re-entered from its own tokenizer, and
every background thread is joined on close."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ado.data import MixtureLoader, PackConfig
from ado.errors import InvalidInputError

HERE = Path(__file__).parent
STRESS = HERE / "stress_getters.py"


def _stress(runs: int, batches: int, txt: bool, timeout: float) -> str:
    """Run the stress script in a subprocess; a hang dumps every thread's stack (exit 1)."""
    args = [sys.executable, str(STRESS), "--runs", str(runs), "--batches", str(batches)]
    args += ["--timeout", str(timeout)] + (["--txt"] if txt else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=runs * timeout + 60)
    assert proc.returncode == 0, f"stress run failed or hung:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.count(": ok ") == runs, proc.stdout
    return proc.stdout


@pytest.mark.parametrize("txt", [False, True], ids=["u16", "txt-tokenizer"])
def test_getters_polled_from_four_threads_never_hang(txt: bool) -> None:
    """20 runs (one fresh loader and cache each) of 60 batches from an HTTP server while four
    threads poll every getter and ``state_dict()``: before the seam was redesigned, 3 of 3
    runs of 300 batches hung."""
    _stress(runs=20, batches=60, txt=txt, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("txt", [False, True], ids=["u16", "txt-tokenizer"])
def test_getters_stress_full(txt: bool) -> None:
    """The issue's figure: 2,000 batches per run, 20 runs."""
    _stress(runs=20, batches=2000, txt=txt, timeout=300)


def _os_threads() -> set[int]:
    """OS thread ids of this process (Rust threads included). Compared as sets: another test's
    stray thread ending meanwhile (a server, a pool) changes a count, not the new ids."""
    return {int(task.name) for task in Path("/proc/self/task").iterdir()}


def test_reentrant_use_from_the_tokenizer_is_an_error(make_domain: Any) -> None:
    """A tokenizer that calls back into its own loader gets a clear error (not a self-deadlock);
    reading ``step``/``weights`` from there is allowed."""
    seen: list[int] = []
    holder: dict[str, MixtureLoader] = {}

    def tok(text: str) -> list[int]:
        loader = holder["loader"]
        seen.append(loader.step)
        assert loader.weights == [1.0]
        loader.state_dict()
        return [1, 2]

    shards = make_domain("b", 10, per_shard=5)
    pack = PackConfig(seq_len=4, eos_id=0, field="txt", tokenizer=tok)
    loader = MixtureLoader({"b": [str(p) for p in shards]}, 2, pack=pack)
    holder["loader"] = loader
    with pytest.raises(InvalidInputError, match="re-entrant"):
        next(loader)
    assert seen == [0]


def test_close_joins_every_thread_and_is_idempotent(make_domain: Any) -> None:
    shards = make_domain("a", 40, per_shard=5)
    before = _os_threads()
    with MixtureLoader({"a": [str(p) for p in shards]}, 4, readahead_threads=3) as loader:
        for _ in range(5):
            next(loader)
        assert len(_os_threads() - before) == 3  # the read-ahead threads
    assert not _os_threads() - before  # joined by __exit__
    loader.close()
    loader.close()
    next(loader)  # iterating again restarts them, from the same position
    assert loader.step == 6
    assert len(_os_threads() - before) == 3
    del loader
    assert not _os_threads() - before  # dropping a loader joins its threads too


GC_DROP = """
import faulthandler, gc, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from servers import ShardHTTPServer
from stress_getters import write_corpus
from ado.data import MixtureLoader, PackConfig

faulthandler.dump_traceback_later(150, exit=True)  # a hang: every stack, exit 1

def comm(task):
    try:
        return (task / "comm").read_text()
    except OSError:  # the thread ended meanwhile
        return ""

def core_threads():  # the loader core's threads: read-ahead and reaper (not Python's own)
    names = [comm(t).strip() for t in Path("/proc/self/task").iterdir()]
    return sorted(n for n in names if n.startswith(("ado-readahead", "ado-loader-rea")))

def threads():
    return len(core_threads())

root = Path(tempfile.mkdtemp())
manifest = write_corpus(root / "corpus")
server = ShardHTTPServer(root / "corpus").start()
base = server.url("").rstrip("/")
before = threads()
loader = MixtureLoader(
    {k: base + v for k, v in manifest.items()}, batch_size=4, seed=1, readahead_threads=1,
    pack=PackConfig(seq_len=32, eos_id=0, field="u16"), cache_dir=root / "cache",
)
cache = loader.cache
# A lock the fetcher takes (as a logging handler's or the cache's own would be).
LOCK = threading.Lock()
blocked = threading.Event()
acquire = cache.acquire

def acquire_taking_the_lock(name):
    if LOCK.locked():
        blocked.set()
    with LOCK:
        return acquire(name)

cache.acquire = acquire_taking_the_lock
for _ in range(3):
    next(loader)
# the read-ahead thread runs (a fetch that failed under load restarts it at the next batch)
deadline = time.monotonic() + 60
while threads() <= before and time.monotonic() < deadline:
    next(loader)
assert threads() == before + 1, core_threads()
with LOCK:
    assert blocked.wait(30), "the read-ahead thread never asked for a shard"
    cycle = [loader]
    cycle.append(cycle)  # only the collector can free the loader now
    del loader, cycle
    gc.collect()  # frees the loader in this thread, which holds what its read thread waits for
deadline = time.monotonic() + 120  # generous: the machine may be loaded
while (threads() != before or any(cache._held.values())) and time.monotonic() < deadline:
    time.sleep(0.01)
assert threads() == before, (core_threads(), before)
assert not any(cache._held.values()), cache._held  # every shard released
server.stop()
print("ok")
"""


def test_a_loader_freed_by_the_collector_never_waits_in_the_collecting_thread() -> None:
    """The collector frees garbage in whichever thread allocates, and that thread may hold a lock
    a read-ahead thread needs (here one the fetcher takes). The loader's threads are then stopped
    and joined, and its shards released, by a reaper thread, not waited for there; before, this
    deadlocked (as the cache's own lock did in CI, while a cache thread indexed shards)."""
    proc = subprocess.run(
        [sys.executable, "-c", GC_DROP, str(HERE)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok", proc.stdout + proc.stderr


GC_EXIT = """
import gc, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from servers import ShardHTTPServer
from stress_getters import write_corpus
from ado.data import MixtureLoader, PackConfig

root = Path(tempfile.mkdtemp())
manifest = write_corpus(root / "corpus")
server = ShardHTTPServer(root / "corpus").start()
base = server.url("").rstrip("/")
loader = MixtureLoader(
    {k: base + v for k, v in manifest.items()}, batch_size=4, seed=1, readahead_threads=1,
    pack=PackConfig(seq_len=32, eos_id=0, field="u16"), cache_dir=root / "cache",
)
cache = loader.cache
inside = threading.Event()
acquire = cache.acquire

def slow_acquire(name):
    inside.set()
    time.sleep(0.3)  # a read-ahead thread inside Python, the GIL released
    return acquire(name)

cache.acquire = slow_acquire
next(loader)
assert inside.wait(60), "no read-ahead fetch"
cycle = [loader]
cycle.append(cycle)
del loader, cycle
gc.collect()  # a reaper now stops the loader; its read-ahead thread is still in the fetch

class SlowTeardown:  # keeps the interpreter finalizing while that fetch returns
    def __del__(self):
        time.sleep(2.0)

slow = SlowTeardown()
print("exiting", flush=True)
"""


def test_the_interpreter_exits_cleanly_while_a_collected_loaders_thread_is_in_python() -> None:
    """A loader freed by the collector just before exit: its read-ahead thread is inside the
    fetcher when the script ends. Exit waits for the reaper, so no thread is still in Python
    when the interpreter finalizes; before, that thread was killed by a forced unwind through
    Rust frames and the process aborted (SIGABRT, "FATAL: exception not rethrown": 3 of 3)."""
    proc = subprocess.run(
        [sys.executable, "-c", GC_EXIT, str(HERE)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout + proc.stderr[-3000:])
    assert proc.stdout.strip() == "exiting"
