"""Where studies live, and how a dead worker is told from a busy one.

- default: a journal file (`outputs/optuna/journal.log`); its file lock makes it safe for several worker processes on
  one machine (or on a shared file system). Its workers are found dead by process id, on this machine.
- a database URL (`postgresql+psycopg://user@host/db`): workers on many machines. Each running trial records a
  heartbeat; a trial without one for `HEARTBEAT_GRACE` intervals is failed and retried by the next worker that looks.
- `sqlite:///file.db`: one worker only (SQLite has no row locks; concurrent writers get "database is locked").
"""

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import psutil
import sqlalchemy
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from components.errors import XstiltsInputError
from components.settings import PROJECT_ROOT

DEFAULT_JOURNAL = PROJECT_ROOT / "outputs" / "optuna" / "journal.log"
CONNECT_TIMEOUT_S = 10
# A trial is taken for dead after this many heartbeat intervals without a beat: a worker's heartbeat thread competes
# with its training for the CPU, so one late beat must not fail a live trial.
HEARTBEAT_GRACE = 3


@dataclass(frozen=True)
class StudyStorage:
    """An opened storage.

    Attributes:
        shown: the storage as logged and printed (a database URL without its password).
        heartbeats: dead workers are found by heartbeats (databases), else by process id on this machine.
        one_worker: the storage serves one worker at a time (SQLite).
    """

    storage: optuna.storages.BaseStorage
    shown: str
    heartbeats: bool
    one_worker: bool = False


def one_worker_only(shown: str) -> XstiltsInputError:
    """The error for a second worker on SQLite."""
    return XstiltsInputError(
        f"SQLite ({shown}) serves one Optuna worker only: it has no row locks, so concurrent workers hit 'database is "
        "locked' and may run a queued trial twice. For several workers use the default journal file (one machine: "
        "leave storage empty, or give a file path) or a database URL (postgresql+psycopg://user@host/db; "
        "scripts/postgres.sh starts a local PostgreSQL)")


def open_storage(spec: str, workers: int, heartbeat_s: int,
                 on_stale_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]) -> StudyStorage:
    """Opens (and creates) the storage `spec`: "" for the default journal, a journal file path, or a database URL.

    Args:
        workers: how many workers this invocation starts; SQLite is refused for more than one.
        on_stale_trial: called with each trial failed for a lost heartbeat (it retries the trial).

    Raises:
        XstiltsInputError: SQLite for several workers, or a storage that cannot be opened or reached.
    """
    if "://" not in spec:
        path = Path(spec) if spec else DEFAULT_JOURNAL
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return StudyStorage(JournalStorage(JournalFileBackend(str(path))), str(path), heartbeats=False)
        except OSError as error:
            raise XstiltsInputError(f"cannot open the journal file {path}: {error}") from None
    # SQLAlchemy's default PostgreSQL driver is psycopg2; the pinned one is psycopg 3.
    url = sqlalchemy.engine.make_url(spec.replace("postgresql://", "postgresql+psycopg://", 1))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        if workers > 1:
            raise one_worker_only(shown)
        opened = lambda: RDBStorage(str(spec), engine_kwargs={"connect_args": {"timeout": 30}})
    else:
        connect = {"connect_timeout": CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
        opened = lambda: RDBStorage(url.render_as_string(hide_password=False),
                                    engine_kwargs={"connect_args": connect},
                                    heartbeat_interval=heartbeat_s, grace_period=HEARTBEAT_GRACE * heartbeat_s,
                                    heartbeat_stale_trial_callback=on_stale_trial)
    try:
        sqlite = url.get_backend_name() == "sqlite"
        return StudyStorage(opened(), shown, heartbeats=not sqlite, one_worker=sqlite)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise XstiltsInputError(f"cannot reach the Optuna storage {shown}: {reason}") from None


def worker_id() -> str:
    """This process, as `<host>:<pid>:<start time>` (the start time tells a reused process id apart)."""
    process = psutil.Process()
    return f"{socket.gethostname()}:{process.pid}:{int(process.create_time())}"


def died_on_this_machine(worker: str) -> bool:
    """Whether `worker` (a `worker_id`) ran on this machine and its process is gone (a zombie, killed but not yet
    reaped by the process that started it, is gone too)."""
    host, pid, started = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return False
    try:
        process = psutil.Process(int(pid))
        return int(process.create_time()) != int(started) or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True

