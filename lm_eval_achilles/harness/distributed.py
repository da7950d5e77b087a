"""``locate=true`` under ``accelerate launch`` (several processes, one per device): one process locates,
the others wait for its cache entry instead of each running the locator.

The process that locates is local rank 0 (``LOCAL_RANK``, else ``RANK``; one per machine, so a cache
folder that is not shared between machines still works); the others poll for the cache file, which
the locating process writes atomically. If it fails, it leaves a ``.failed`` note next to the entry
and the waiting processes stop with its message; if nothing appears within ``ACHILLES_LOCATE_TIMEOUT``
seconds (default :data:`WAIT_S`), they stop with an error that says what to check."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lm_eval_achilles.errors import AchillesError

#: Seconds a waiting process waits for the locating one by default (``ACHILLES_LOCATE_TIMEOUT``).
WAIT_S = 6 * 3600
#: Seconds between two looks at the cache folder.
POLL_S = 1.0
#: When this process started (a ``.failed`` note older than this, with some slack, is from another run).
STARTED = time.time()


def rank_and_size() -> tuple[int, int]:
    """(rank, number of processes) on this machine, from the variables ``accelerate launch`` and
    ``torchrun`` set (``LOCAL_RANK``/``LOCAL_WORLD_SIZE``, else ``RANK``/``WORLD_SIZE``); (0, 1) alone."""

    def env(*names, default):
        for name in names:
            value = os.environ.get(name, "").strip()
            if value:
                try:
                    return int(value)
                except ValueError:
                    raise AchillesError(f"{name}={value!r} is not an integer") from None
        return default

    return env("LOCAL_RANK", "RANK", default=0), env("LOCAL_WORLD_SIZE", "WORLD_SIZE", default=1)


def is_waiting_rank() -> bool:
    rank, size = rank_and_size()
    return size > 1 and rank != 0


def failed_note(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


def timeout_s() -> float:
    value = os.environ.get("ACHILLES_LOCATE_TIMEOUT", "").strip()
    if not value:
        return WAIT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise AchillesError(f"ACHILLES_LOCATE_TIMEOUT must be a number of seconds > 0, got {value!r}")
    return seconds


def wait_for(path: Path) -> None:
    """Block until ``path`` exists (written by rank 0), or raise after the timeout or on rank 0's failure."""
    rank, _ = rank_and_size()
    limit = timeout_s()
    print(f"[achilles] rank {rank}: waiting for rank 0 to locate (cache entry {path})", flush=True)
    start = time.monotonic()
    note = failed_note(path)
    while not path.is_file():
        if note.is_file() and note.stat().st_mtime >= STARTED - 60:
            raise AchillesError(f"rank 0 failed to locate: {note.read_text(encoding='utf-8').strip()}")
        if time.monotonic() - start > limit:
            raise AchillesError(
                f"rank {rank} waited {limit:g} s for rank 0's locator result {path}, and it did not appear: "
                "rank 0 may still be locating (raise ACHILLES_LOCATE_TIMEOUT=SECONDS) or have stopped; every "
                f"process on this machine must see the same cache folder (ACHILLES_CACHE, now {path.parent.parent})"
            )
        time.sleep(POLL_S)


def note_failure(path: Path, exc: BaseException) -> None:
    """Rank 0 could not locate: tell the waiting ranks (best effort)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        failed_note(path).write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
    except OSError:
        pass
