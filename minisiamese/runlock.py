"""One run per folder: a process that trains or evaluates into a run folder
holds an advisory lock on ``RUN/.lock`` (``flock``), so a second one pointed at
the same folder is refused instead of interleaving its checkpoints with the
first's.  The kernel drops the lock when its holder exits -- however it exits,
SIGKILL included -- so a lock file left by a killed run never blocks a
``--resume``.  Re-entrant within a process (training inside train-and-evaluate).
"""
import os

from .errors import RunFolderBusy

try:
    import fcntl
except ImportError:          # not POSIX: no locking
    fcntl = None

LOCK_NAME = ".lock"
_held = {}                   # real path -> [fd, depth]


class run_lock:
    """``with run_lock(folder):`` hold the folder's lock (creating the folder)."""

    def __init__(self, folder):
        self.folder = folder

    def __enter__(self):
        os.makedirs(self.folder, exist_ok=True)
        self.key = os.path.realpath(self.folder)
        if self.key in _held:
            _held[self.key][1] += 1
            return self
        if fcntl is None:
            _held[self.key] = [None, 1]
            return self
        path = os.path.join(self.folder, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:                             # a folder, a dangling link, no permission...
            raise RunFolderBusy(f"{path}: cannot open this run folder's lock file ({exc.strerror or exc}); "
                                f"remove it if no run is using the folder, or choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(f"{self.folder}: another process (pid {holder}) is running in this run folder; "
                                f"wait for it to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[self.key] = [fd, 1]
        return self

    def __exit__(self, *exc):
        entry = _held[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self.key]
            if entry[0] is not None:
                os.ftruncate(entry[0], 0)
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
        return False
