"""Recycled workspace directories: a fast path for staging (executor-contract.md §3).

Creating a directory and five files, then deleting them, is most of the cost of a short run on a
journaling filesystem (on ext4 here: ~1 ms per attempt, against ~50 µs for rewriting existing
files). After an attempt, a workspace that still holds exactly the five payload files -- regular
files, mode 0644, owned by us, with no other links, in an unmodified 0700 directory -- is renamed
to a spare instead of being deleted. The next attempt renames a spare to its own fresh unique
name and overwrites all five files completely (opened with ``O_NOFOLLOW``, then truncated to the
new length), so nothing a payload wrote survives, exactly as with a new directory; anything else
in the directory, or any doubt, and it is deleted as usual. Runners whose payloads can outlive
the attempt unconfined by the runtime must not recycle (docker opts out; a host payload runs
with the runtime's own rights anyway, and bwrap payloads die with their pid namespace).

Spares are named ``mirror_neuron_spare_<pid>_<hex>``; like every workspace they have mode 0700, so
the previous attempt's files, kept until reuse, are readable by the runtime's user only. Those of dead processes
are swept the first time a process stages in a temp dir, and a process removes its own at exit.
``MAX_SPARES = 0`` turns recycling off.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat

__all__ = ["MAX_SPARES", "give", "take"]

MAX_SPARES = 32
#: temp_dir -> spares as (path, sizes of the five files)
_pools: dict[str, list[tuple[str, tuple[int, ...]]]] = {}


def take(temp_dir: str, path: str) -> tuple[int, ...] | None:
    """Rename a spare of ``temp_dir`` to ``path`` and return the sizes of its five files; ``None``
    when there is none (create the directory then)."""
    pool = _pools.get(temp_dir)
    if pool is None:
        _pools[temp_dir] = []
        _sweep(temp_dir)
        return None
    while pool:
        spare, sizes = pool.pop()
        try:
            os.rename(spare, path)
            return sizes
        except OSError:
            continue  # vanished (another process swept it): try the next one
    return None


def give(temp_dir: str, path: str, names: tuple[str, ...]) -> bool:
    """Keep ``path`` as a spare if it holds exactly ``names`` in pristine state; else False."""
    pool = _pools.setdefault(temp_dir, [])
    if len(pool) >= MAX_SPARES:
        return False
    uid = os.getuid()
    sizes = []
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or not _plain(st.st_mode, 0o700) or st.st_uid != uid:
            return False
        with os.scandir(path) as entries:
            found = [entry.name for entry in entries]
        if len(found) != len(names) or set(found) != set(names):
            return False
        for name in names:
            st = os.lstat(f"{path}/{name}")
            if not stat.S_ISREG(st.st_mode) or not _plain(st.st_mode, 0o644) or st.st_uid != uid:
                return False
            if st.st_nlink != 1:  # a hard link elsewhere would see the next attempt's data
                return False
            sizes.append(st.st_size)
        spare = f"{temp_dir}/mirror_neuron_spare_{os.getpid()}_{os.urandom(6).hex()}"
        os.rename(path, spare)
    except OSError:
        return False
    pool.append((spare, tuple(sizes)))
    return True


def _plain(mode: int, created: int) -> bool:
    """Still the mode we created it with (up to the umask): nothing added, owner bits intact."""
    bits = stat.S_IMODE(mode)
    owner = created & 0o700
    return bits & ~created == 0 and bits & owner == owner


def _sweep(temp_dir: str) -> None:
    """Remove spares left by processes that no longer exist."""
    try:
        names = os.listdir(temp_dir)
    except OSError:
        return
    for name in names:
        if not name.startswith("mirror_neuron_spare_"):
            continue
        try:
            pid = int(name.split("_")[3])
            os.kill(pid, 0)
            continue  # its owner is alive
        except (ValueError, IndexError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        shutil.rmtree(f"{temp_dir}/{name}", ignore_errors=True)


def _remove_all() -> None:
    for pool in _pools.values():
        while pool:
            shutil.rmtree(pool.pop()[0], ignore_errors=True)


def _forget() -> None:
    _pools.clear()  # a forked child must not share the parent's spares


atexit.register(_remove_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)
