"""When every channel needs a new epoch: a store that may have lost acknowledged commits.

A subscriber resumes with ``since`` and ``epoch``. If the store lost the last
commits of a channel (its head went back from 10 to 7) and kept the epoch,
the next appends reuse offsets 8, 9, 10, and a client that saw the lost 8-10
would resume with ``recovered: true`` and skip the new ones silently. So a
store that may have lost commits gives every channel a new epoch before it
serves anyone: such clients get ``recovered: false`` and refetch.

Rotating costs every client a refetch of every channel it follows, so a
store rotates only when commits can really have been lost:

- **SQLite** (WAL). ``synchronous=FULL`` fsyncs every commit: nothing
  acknowledged is ever lost. ``NORMAL`` leaves the last commits in the OS's
  page cache: a ``kill -9`` of the process loses nothing (the kernel still
  writes them), only a crash of the operating system or a power loss can.
  Each process that opens the store (``agora serve``, and the operator's
  commands beside it) records a run in ``meta`` (``run:<id>`` = its
  ``synchronous`` and the kernel's boot id) and deletes it when it closes
  cleanly. A store rotates when it finds a ``NORMAL`` run of an earlier boot
  (or the boot id cannot be read): that process stopped without closing and
  the machine went down since, so its last commits may be gone. A run of
  this boot may be alive (another process) or killed (nothing lost), so it
  stays. These records are written with an fsync.
- **PostgreSQL**. With ``synchronous_commit = off`` or ``fsync = off`` a
  crash of the PostgreSQL server can lose acknowledged commits. The store
  keeps ``pg_postmaster_start_time()`` in ``meta`` and rotates when the
  server restarted since while such a setting was in force (then or now).

Each rotation is one ``UPDATE`` of every channel.
"""

from __future__ import annotations

from pathlib import Path

#: ``meta`` keys: ``run:<id>`` = "<synchronous> <boot id>" for each SQLite run not closed
RUN = "run:"
POSTGRES_STARTED = "postgres_started"  # pg_postmaster_start_time() last seen
POSTGRES_UNSAFE = "postgres_unsafe"  # '1' if commits could be lost then
ROTATED = "epochs_rotated"  # ms timestamp of the last rotation, for the log and tests

#: One statement: a fresh random epoch per channel.
ROTATE_SQLITE = "UPDATE channels SET epoch = lower(hex(randomblob(8)))"
ROTATE_POSTGRES = (
    "UPDATE channels SET epoch ="
    " substr(md5(random()::text || clock_timestamp()::text || id), 1, 16)"
)
#: What a PostgreSQL session can tell about its durability.
POSTGRES_DURABILITY = (
    "SELECT pg_postmaster_start_time()::text,"
    " current_setting('synchronous_commit') = 'off' OR current_setting('fsync') = 'off'"
)

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """The kernel's boot id (Linux), or None where there is none to read."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def run_record(synchronous: str, boot: str | None) -> str:
    return f"{synchronous} {boot or '?'}"


def ended_runs(runs: dict[str, str], boot: str | None) -> list[str]:
    """The runs (keys of ``run:`` records) that ended before this boot: none is alive."""
    if boot is None:
        return []
    return [key for key, record in runs.items() if record.partition(" ")[2] != boot]


def sqlite_may_have_lost(runs: dict[str, str], boot: str | None) -> bool:
    """Whether an SQLite store whose ``run:`` records are ``runs`` may have lost commits.

    A store last run before these records existed has none: nothing rotated.
    """
    for record in runs.values():
        synchronous, _, run_boot = record.partition(" ")
        if synchronous != "FULL" and (boot is None or run_boot != boot):
            return True
    return False


def postgres_may_have_lost(meta: dict[str, str], started: str, unsafe: bool) -> bool:
    """Whether PostgreSQL restarted since the store saw it, with commits at risk."""
    seen = meta.get(POSTGRES_STARTED)
    if seen is None or seen == started:
        return False
    return unsafe or meta.get(POSTGRES_UNSAFE) == "1"
