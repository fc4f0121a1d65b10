"""``izzi-proxy serve --workers N``: N gateway processes on one port, one per core.

The process started is a supervisor that serves nothing itself: each worker is ``izzi-proxy
serve --worker`` with the same options, listening with ``SO_REUSEPORT``, so the kernel
spreads connections over them. The supervisor

- starts them and waits until each says it listens (a byte on a pipe); one that dies first
  fails the start with its exit code (a config mistake is reported once, by that worker);
- restarts a worker that dies later (at most one start per second);
- on SIGHUP reloads: starts a new set (which reads the config again), and once all of them
  listen, stops the old set gracefully: no connection is refused meanwhile; a new set that
  fails to start is stopped and the old one keeps serving;
- on SIGTERM or SIGINT stops every worker gracefully (each drains its keep-alive
  connections, finishes its streams within ``shutdown_timeout_s`` and settles its holds, as a
  single process does: :mod:`izzi_proxy.serving`) and exits when they all have.

Shared state must be shared: the in-process limiter would give every worker the whole of
each plan, so several workers need ``limiter_url`` in Redis (refused at start otherwise).
The ledger may stay SQLite on one host (its write lock keeps it exact across processes) or
be PostgreSQL. Counters and histograms add up across workers through prometheus-client's
``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder, removed at exit, unless one is set). Dashboard
sessions are signed with one secret for all workers (``IZZI_SESSION_SECRET``, the admin
token's, or one the supervisor draws).
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from izzi_proxy.config import Config

log = logging.getLogger("izzi.workers")

READY_FD_ENV = "IZZI_READY_FD"  # the pipe a worker writes one byte to once it listens
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
START_TIMEOUT_S = 60.0
RESTART_EVERY_S = 1.0
KILL_GRACE_S = 10.0  # beyond the gateway's own shutdown time, before SIGKILL


class WorkersError(Exception):
    """Several workers cannot run with this config (the message says why and what to set)."""


def shared_limits(config: Config) -> bool:
    return not config.storage.limiter_url.startswith("memory://")


def count(asked: int | None, config: Config, port: int) -> int:
    """How many workers: as asked, else one per core when the limits can be shared, else one."""
    if asked is None:
        return (os.cpu_count() or 1) if shared_limits(config) and port != 0 else 1
    if asked < 1:
        raise WorkersError(f"--workers takes 1 or more, got {asked}")
    if asked > 1 and not shared_limits(config):
        raise WorkersError(
            f"--workers {asked} needs the limits shared by the workers: set [storage] limiter_url (IZZI_REDIS_URL) "
            "to a Redis URL; the in-process limiter would give each worker a whole plan"
        )
    if asked > 1 and port == 0:
        raise WorkersError("--workers needs a fixed --port: with port 0 each worker would listen on another port")
    return asked


def supervised(asked: int | None, workers: int, config: Config, port: int) -> bool:
    """Whether a supervisor runs the workers: for several, and by default whenever the limits
    are shared (even one worker, on a one-core machine: the supervisor reloads on SIGHUP and
    restarts a worker that dies). ``--workers 1`` asks for one process, unsupervised."""
    return workers > 1 or (asked is None and shared_limits(config) and port != 0)


def ready(listening: bool = True) -> None:
    """In a worker: tell the supervisor it listens (nothing when not started by one)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None and listening:
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass


@dataclass
class Worker:
    process: subprocess.Popen
    ready_fd: int | None  # read end, until the worker said it listens
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    def __init__(self, argv: Sequence[str], workers: int, stop_timeout_s: float) -> None:
        self._argv, self._count, self._stop_timeout_s = list(argv), workers, stop_timeout_s
        self._env = dict(os.environ)
        self._own_metrics_dir: str | None = None
        if not self._env.get(MULTIPROC_ENV):
            self._own_metrics_dir = tempfile.mkdtemp(prefix="izzi-metrics-")
            self._env[MULTIPROC_ENV] = self._own_metrics_dir
        from izzi_proxy.dashboard.sessions import SECRET_ENV
        from izzi_proxy.middleware.auth import ADMIN_TOKEN_ENV

        if not self._env.get(SECRET_ENV) and not self._env.get(ADMIN_TOKEN_ENV):
            # one dashboard session secret for all the workers (and their reloads), so a
            # sign-in on one is a sign-in on all; it ends with the supervisor
            self._env[SECRET_ENV] = secrets.token_urlsafe(32)
        self._signal: int | None = None

    def _start(self) -> Worker:
        read_end, write_end = os.pipe()
        env = {**self._env, READY_FD_ENV: str(write_end)}
        process = subprocess.Popen([sys.executable, "-m", "izzi_proxy", *self._argv], env=env, pass_fds=(write_end,))
        os.close(write_end)
        return Worker(process, read_end)

    def _wait_ready(self, workers: list[Worker]) -> int | None:
        """Until every worker listens: None, or the exit code of one that died first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = {w.ready_fd: w for w in workers if w.ready_fd is not None}
        while waiting:
            if self._signal in (signal.SIGTERM, signal.SIGINT):
                return 1
            ready_fds, _, _ = select.select(list(waiting), [], [], 0.2)
            for fd in ready_fds:
                worker = waiting.pop(fd)
                said = os.read(fd, 1)
                os.close(fd)
                worker.ready_fd = None
                if not said:  # closed without a word: it is dying
                    return worker.process.wait() or 1
            if time.monotonic() > deadline:
                log.error("workers did not start listening within %.0f s", START_TIMEOUT_S)
                return 1
        return None

    def _stop(self, workers: Sequence[Worker]) -> None:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s + KILL_GRACE_S
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in time: killed", worker.pid)
                worker.process.kill()
                worker.process.wait()
            self._forget(worker)

    def _forget(self, worker: Worker) -> None:
        if worker.ready_fd is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, self._env[MULTIPROC_ENV])
        except Exception:  # its gauges' files only
            pass

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signal = signum

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            return self._run()
        finally:
            if self._own_metrics_dir:
                shutil.rmtree(self._own_metrics_dir, ignore_errors=True)

    def _run(self) -> int:
        workers = [self._start() for _ in range(self._count)]
        if (failed := self._wait_ready(workers)) is not None:
            self._stop(workers)
            return failed
        log.info("%d workers serving (pids %s)", len(workers), ", ".join(str(w.pid) for w in workers))
        last_start = 0.0
        while True:
            signum, self._signal = self._signal, None
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("stopping %d workers", len(workers))
                self._stop(workers)
                return 0
            if signum == signal.SIGHUP:
                workers = self._reload(workers)
            for i, worker in enumerate(workers):
                if worker.process.poll() is not None and time.monotonic() - last_start >= RESTART_EVERY_S:
                    log.error("worker %d exited with %s: starting another", worker.pid, worker.process.returncode)
                    self._forget(worker)
                    workers[i], last_start = self._start(), time.monotonic()
            for worker in workers:  # a restarted worker's word that it listens
                if worker.ready_fd is not None and select.select([worker.ready_fd], [], [], 0)[0]:
                    os.read(worker.ready_fd, 1)
                    os.close(worker.ready_fd)
                    worker.ready_fd = None
            time.sleep(0.1)

    def _reload(self, old: list[Worker]) -> list[Worker]:
        log.info("reloading: starting %d new workers", self._count)
        new = [self._start() for _ in range(self._count)]
        if (failed := self._wait_ready(new)) is not None:
            log.error("reload failed (a new worker exited with %s): the old workers keep serving", failed)
            self._stop(new)
            return old
        self._stop(old)
        log.info("reloaded (pids %s)", ", ".join(str(w.pid) for w in new))
        return new
