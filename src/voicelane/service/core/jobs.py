"""Training and dataset jobs: a SQLite job store and the manager that runs them.

Each job is one child process (``sys.executable -m voicelane train|dataset ...``, an argument
list, never a shell string) speaking the line protocol of SPEC §3 on stdout. A reader thread per
job splits real lines (``voicelane.protocol.iter_lines``), parses them with
``voicelane.protocol.parse_line`` and folds them into the record with ``JobView`` (progress,
merged STATS metadata, ARTIFACT refs in order). Every stdout line is kept as an event (for SSE,
resumable by sequence number); stdout and stderr both go to the job's log file (capped) and to
a bounded tail in the record.

Records live in SQLite (WAL) and survive a restart. On start-up, jobs left ``running`` by a
dead service become ``error`` with code ``orphaned`` (their process group is killed when it is
provably still the job's process); ``pending`` jobs stay queued and start again.

State mapping of the exit status: 0 -> done; cancel requested, 130, -SIGTERM or -SIGINT ->
cancelled; anything else -> error, with the code of the job's status JSON when it names one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from voicelane.bundle import validate_voice_bundle
from voicelane.errors import NEXT_ACTIONS, reported_code
from voicelane.protocol import JobView, parse_line
from voicelane.runner import RunHandle, Runner, kill_orphan
from voicelane.runspec import SPEC_FILE, RunSpec, child_argv
from voicelane.service.core.train_compat import final_message
from voicelane.status import finalize, now_iso, read_status

log = logging.getLogger("voicelane.service.jobs")

STATES = ("pending", "running", "done", "error", "cancelled")
FINAL_STATES = ("done", "error", "cancelled")
MAX_LINE_CHARS = 8192
MAX_WARNINGS = 50
CHECK_REPORT_MAX_CHARS = 2_000_000
ORPHANED_ACTION = NEXT_ACTIONS.get(
    "orphaned",
    "The service stopped while this job ran; start the job again (training resumes from its last checkpoint).",
)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    lane TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    progress_current INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    artifacts TEXT NOT NULL DEFAULT '[]',
    warnings TEXT NOT NULL DEFAULT '[]',
    logs TEXT NOT NULL DEFAULT '[]',
    options TEXT NOT NULL DEFAULT '{}',
    argv TEXT NOT NULL DEFAULT '[]',
    job_dir TEXT NOT NULL,
    out_dir TEXT,
    status_path TEXT,
    log_path TEXT,
    pid INTEGER,
    runner_ref TEXT,
    exit_code INTEGER,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    raw TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

JSON_COLS = ("metadata", "artifacts", "warnings", "logs", "options", "argv", "error", "runner_ref")


@dataclass
class JobRecord:
    """One row of ``jobs`` (JSON columns decoded), read through its attributes."""

    id: str
    type: str  # job type: train | tts_voice_train | tts_prod_train | dataset
    lane: str
    kind: str  # the queue: train | dataset
    state: str  # STATES
    job_dir: str
    created_at: str
    message: str = ""
    progress_current: int = 0
    progress_total: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    out_dir: str | None = None
    status_path: str | None = None
    log_path: str | None = None
    pid: int | None = None
    runner_ref: dict[str, Any] | None = None
    exit_code: int | None = None
    error: dict[str, Any] | None = None
    cancel_requested: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    seq: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobRecord:
        names = {f.name for f in dataclass_fields(cls)}
        values = {k: v for k, v in dict(row).items() if k in names}
        for c in JSON_COLS:
            if isinstance(values.get(c), str):
                values[c] = json.loads(values[c])
        return cls(**values)

    def columns(self) -> dict[str, Any]:
        """The row to store (JSON columns encoded)."""
        row = asdict(self)
        return {k: json.dumps(v, sort_keys=True) if k in JSON_COLS and v is not None else v for k, v in row.items()}


class JobStore:
    """One SQLite connection shared by the service's threads (serialised by a lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.recovered_from: str | None = None  # where an unreadable database was moved at start
        try:
            self._open()
        except sqlite3.DatabaseError as exc:  # never a crash loop: move it aside, start empty, say so
            if getattr(self, "db", None) is not None:
                self.db.close()
            self.recovered_from = quarantine_database(self.path, exc)
            self._open()

    def _open(self) -> None:
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        with self.lock:
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.db.executescript(SCHEMA_SQL)
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(jobs)")}
            if "runner_ref" not in cols:  # a database written before the column existed
                self.db.execute("ALTER TABLE jobs ADD COLUMN runner_ref TEXT")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @staticmethod
    def _row(row: sqlite3.Row | None) -> JobRecord | None:
        return None if row is None else JobRecord.from_row(row)

    def insert(self, rec: JobRecord | Mapping[str, Any]) -> None:
        rec = (rec if isinstance(rec, JobRecord) else JobRecord.from_row(rec)).columns()
        cols = ",".join(rec)
        with self.lock:
            self.db.execute(f"INSERT INTO jobs ({cols}) VALUES ({','.join('?' * len(rec))})", tuple(rec.values()))

    def update(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        vals = []
        for k, v in fields.items():
            vals.append(json.dumps(v, sort_keys=True) if k in JSON_COLS and v is not None else v)
        sets = ",".join(f"{k}=?" for k in fields)
        with self.lock:
            self.db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*vals, job_id))

    def get(self, job_id: str) -> JobRecord | None:
        with self.lock:
            return self._row(self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def list(
        self, state: str | None = None, job_type: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[JobRecord], int]:
        where, args = [], []
        if state:
            where.append("state=?")
            args.append(state)
        if job_type:
            where.append("type=?")
            args.append(job_type)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self.lock:
            total = self.db.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0]
            rows = self.db.execute(
                f"SELECT * FROM jobs{clause} ORDER BY rowid DESC LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
        return [self._row(r) for r in rows], int(total)  # type: ignore[misc]

    def next_pending(self, kind: str, skip: Iterable[str] = ()) -> JobRecord | None:
        skip = sorted(skip)
        not_in = f" AND id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        with self.lock:
            return self._row(
                self.db.execute(
                    f"SELECT * FROM jobs WHERE state='pending' AND kind=?{not_in} ORDER BY rowid LIMIT 1", (kind, *skip)
                ).fetchone()
            )

    def count(self, state: str, kind: str | None = None) -> int:
        with self.lock:
            if kind:
                return int(
                    self.db.execute("SELECT COUNT(*) FROM jobs WHERE state=? AND kind=?", (state, kind)).fetchone()[0]
                )
            return int(self.db.execute("SELECT COUNT(*) FROM jobs WHERE state=?", (state,)).fetchone()[0])

    def latest_with_status(self, job_type: str | None = None, after_rowid: int = 0) -> JobRecord | None:
        q = "SELECT * FROM jobs WHERE rowid>? AND status_path IS NOT NULL AND state!='pending'"
        args: list[Any] = [after_rowid]
        if job_type:
            q += " AND type=?"
            args.append(job_type)
        with self.lock:
            rows = self.db.execute(q + " ORDER BY rowid DESC LIMIT 20", args).fetchall()
        for r in rows:
            d = self._row(r)
            if d and d.status_path and Path(d.status_path).is_file():
                return d
        return None

    def max_rowid(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM jobs").fetchone()[0])

    def add_event(self, job_id: str, seq: int, kind: str, raw: str) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO job_events (job_id, seq, kind, raw) VALUES (?,?,?,?)", (job_id, seq, kind, raw)
            )

    def events(self, job_id: str, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT seq, kind, raw FROM job_events WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def meta_get(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def meta_set(self, key: str, value: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (key, value))


def reported_error(stdout_other: list[str], tail: Iterable[str], rc: int | None) -> dict[str, Any] | None:
    """The stable code a child reported without a status file: the check report's ``error``
    (stdout JSON), else the CLI's last ``error: <code>: <message>`` line on stderr. ``internal_error``
    is left to the caller (it is what a crash looks like)."""
    try:
        report = json.loads("\n".join(stdout_other)) if stdout_other else None
    except ValueError:
        report = None
    err = report.get("error") if isinstance(report, dict) else None
    if isinstance(err, dict) and err.get("code") in NEXT_ACTIONS:
        return {
            "code": err["code"],
            "message": str(err.get("message", "")),
            "details": err.get("details") or {},
            "next_action": err.get("next_action") or NEXT_ACTIONS[err["code"]],
        }
    found = reported_code(tail)
    if found is None:
        return None
    return {"code": found[0], "message": found[1], "details": {"exitCode": rc}, "next_action": NEXT_ACTIONS[found[0]]}


def reconcile_orphan(row: JobRecord, details: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str]:
    """What a job left running by a dead service becomes, judged by what its run left behind: a
    completed status (and, for a voice, a bundle that validates) -> ``done`` with a note; a run
    that failed on its own keeps its code; anything else -> ``error`` / ``orphaned``."""
    path = Path(row.status_path) if row.status_path else None
    status = read_status(path) if path is not None and path.is_file() else None
    status = status if isinstance(status, dict) else {}
    if status.get("state") == "completed":
        bundle_dir = status.get("bundle")
        if not bundle_dir:
            return "done", None, "done: it finished while the service was down (its status says completed)"
        result = validate_voice_bundle(bundle_dir)
        if result.ok:
            return (
                "done",
                None,
                ("done: it finished while the service was down (its status says completed and its bundle validates)"),
            )
        details = {**details, "bundle": str(bundle_dir), "bundleError": result.error}
    own = status.get("error") if isinstance(status.get("error"), dict) else None
    if own and own.get("code") in NEXT_ACTIONS and own["code"] not in ("cancelled", "orphaned", "internal_error"):
        err = {
            "code": own["code"],
            "message": str(own.get("message", "")),
            "details": own.get("details") or {},
            "next_action": status.get("next_action") or NEXT_ACTIONS[own["code"]],
        }
        return "error", err, f"{own['code']}: {err['message']}"[:500]
    err = {
        "code": "orphaned",
        "message": "the service stopped while this job was running",
        "details": details,
        "next_action": ORPHANED_ACTION,
    }
    return "error", err, "orphaned: the service stopped while this job was running"


def quarantine_database(path: Path, exc: Exception) -> str:
    """Move an unreadable job database (and its WAL files) aside; return the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.replace(src, moved.with_name(moved.name + suffix))
    log.error(
        "job_database_corrupt: %s could not be read (%s); moved to %s and started with an empty job "
        "database (runs, statuses and bundles on disk are untouched)",
        path,
        exc,
        moved,
    )
    return str(moved)


def _discard(handle: RunHandle, grace_s: float) -> None:
    """Stop a process nobody will read: terminate it, drain its lines, reap it."""
    handle.terminate(grace_s)
    for _ in handle.lines():
        pass
    handle.wait(grace_s)


@dataclass(frozen=True)
class JobPaths:
    id: str
    job_dir: Path
    out_dir: Path
    status_path: Path
    log_path: Path


@dataclass
class ActiveJob:
    id: str
    kind: str
    handle: RunHandle
    status_path: Path
    log_path: Path
    view: JobView = field(default_factory=JobView)
    tail: deque = field(default_factory=deque)
    seq: int = 0
    log_bytes: int = 0
    log_capped: bool = False
    cancel_requested: bool = False
    last_tail_flush: float = 0.0
    stdout_other: list[str] = field(default_factory=list)
    stdout_other_chars: int = 0
    log_fh: Any = None


class JobManager:
    def __init__(
        self,
        store: JobStore,
        runner: Runner,
        data_dir: Path,
        *,
        max_train_jobs: int = 1,
        max_dataset_jobs: int = 1,
        cancel_grace_s: float = 10.0,
        log_tail_lines: int = 200,
        max_log_bytes: int = 20 * 1024 * 1024,
        max_events_per_job: int = 50000,
        child_env: dict[str, str] | None = None,
    ):
        self.store = store
        self.runner = runner
        self.data_dir = Path(data_dir)
        self.limits = {"train": max_train_jobs, "dataset": max_dataset_jobs}
        self.cancel_grace_s = cancel_grace_s
        self.tail_lines = log_tail_lines
        self.max_log_bytes = max_log_bytes
        self.max_events = max_events_per_job
        self.child_env = dict(child_env if child_env is not None else os.environ)
        self.active: dict[str, ActiveJob] = {}
        self.starting: dict[str, str] = {}  # job id -> kind, while its runner starts (outside the lock)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.closing = False

    # --- lifecycle ------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Reconcile jobs left running by a dead service (``reconcile_orphan``); return their ids."""
        orphans = []
        rows, _ = self.store.list(state="running", limit=100000)
        for row in rows:
            pid = row.pid
            if pid and row.job_dir:  # its command line names the job folder (spec.json, --out)
                if kill_orphan(int(pid), str(row.job_dir)):
                    log.warning("killed orphaned process group %s of job %s", pid, row.id)
            details: dict[str, Any] = {"pid": pid}
            ref = row.runner_ref
            if isinstance(ref, dict) and ref.get("kind") == "ray":
                from voicelane.runner.ray import stop_orphan

                details |= {"ray_job_id": ref.get("job_id"), "ray_status_after_stop": stop_orphan(ref)}
                log.warning("stopped orphaned Ray job %s of job %s", ref.get("job_id"), row.id)
            state, err, message = reconcile_orphan(row, details)
            metadata = {**(row.metadata or {}), "reconciled": message}
            self.store.update(row.id, state=state, error=err, ended_at=now_iso(), message=message, metadata=metadata)
            log.warning("job %s was running when the service stopped: %s", row.id, message)
            if state == "error" and row.status_path:
                try:  # an orphan's status says so even when its lifeline already wrote `cancelled`
                    finalize(
                        Path(row.status_path),
                        err,
                        state="error",
                        job_type=row.type,
                        only_if_running=err["code"] != "orphaned",
                        next_action=err["next_action"],
                    )
                except OSError:
                    log.exception("cannot finalise the status of orphaned job %s", row.id)
            orphans.append(row.id)
        return orphans

    def start(self) -> None:
        self.schedule()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting work; cancel running jobs (their records end ``cancelled``)."""
        with self.lock:
            self.closing = True
            active = list(self.active.values())
            for aj in active:
                aj.cancel_requested = True
                self.store.update(aj.id, cancel_requested=1)
        threads = [
            threading.Thread(target=aj.handle.terminate, args=(self.cancel_grace_s,), daemon=True) for aj in active
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + (timeout if timeout is not None else self.cancel_grace_s + 15)
        with self.lock:
            while self.active and time.monotonic() < deadline:
                self.changed.wait(0.2)

    # --- submitting -------------------------------------------------------------------------
    def new_job_paths(self) -> JobPaths:
        job_id = "job-" + uuid.uuid4().hex[:16]
        job_dir = self.data_dir / "jobs" / job_id
        return JobPaths(job_id, job_dir, job_dir / "out", job_dir / "train_status.json", job_dir / "job.log")

    def submit(
        self,
        job_type: str,
        lane: str,
        kind: str,
        options: dict[str, Any],
        *,
        spec: RunSpec | None = None,
        argv_tail: list[str] | None = None,
        paths: JobPaths | None = None,
    ) -> JobRecord:
        """Create a pending job: a lane run (``spec``, whose out and status path must be the job's,
        see ``new_job_paths``) started as ``python -m voicelane run spec.json``, or another command
        (``argv_tail`` after ``python -m voicelane``)."""
        p = paths or self.new_job_paths()
        if spec is not None and (spec.out != p.out_dir or spec.status_path != p.status_path):
            raise ValueError("the run spec must write into the job's own folder (new_job_paths)")
        argv = (
            child_argv(p.job_dir / SPEC_FILE)
            if spec is not None
            else [sys.executable, "-m", "voicelane", *(argv_tail or [])]
        )
        rec = JobRecord(
            id=p.id,
            type=job_type,
            lane=lane,
            kind=kind,
            state="pending",
            message="Queued",
            options=options,
            argv=argv,
            job_dir=str(p.job_dir),
            out_dir=str(p.out_dir),
            status_path=str(p.status_path),
            log_path=str(p.log_path),
            created_at=now_iso(),
        )
        with self.lock:
            if self.closing:
                raise RuntimeError("the service is shutting down")
            p.job_dir.mkdir(parents=True, exist_ok=True)
            if spec is not None:
                spec.write(p.job_dir / SPEC_FILE)
            self.store.insert(rec)
        job_id = p.id
        self.schedule()
        return self.store.get(job_id)  # type: ignore[return-value]

    def schedule(self) -> None:
        """Start pending jobs up to the limits. A job is claimed under the lock and started outside
        it: a runner can take seconds to start (a Ray upload) and must not block the service."""
        while (job := self._claim_next()) is not None:
            self._launch(job)

    def _claim_next(self) -> JobRecord | None:
        with self.lock:
            if self.closing:
                return None
            for kind, limit in self.limits.items():
                busy = sum(1 for a in self.active.values() if a.kind == kind) + list(self.starting.values()).count(kind)
                if busy < limit and (job := self.store.next_pending(kind, skip=self.starting)) is not None:
                    self.starting[job.id] = kind
                    return job
        return None

    def _child_env(self, status_path: Path) -> dict[str, str]:
        env = {k: v for k, v in self.child_env.items() if k not in ("VOICELANE_API_TOKEN",)}
        env["TRAIN_STATUS_PATH"] = str(status_path)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONIOENCODING", "utf-8")
        return env

    def _launch(self, job: JobRecord) -> None:
        job_id = job.id
        job_dir = Path(job.job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        status_path = Path(job.status_path)
        log_path = Path(job.log_path)
        try:
            handle = self.runner.start(list(job.argv), self._child_env(status_path), job_dir)
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            with self.lock:
                self.starting.pop(job_id, None)
            from voicelane.errors import VoicelaneError

            if isinstance(exc, VoicelaneError):  # e.g. managed_job_unavailable from the Ray runner
                code, details = exc.code, exc.details
            else:
                code = "runtime_dependency_missing" if isinstance(exc, (OSError, RuntimeError)) else "internal_error"
                details = {}
            err = {"code": code, "message": f"the job process could not start: {exc}", "details": details}
            self.store.update(
                job_id,
                state="error",
                error=err,
                started_at=now_iso(),
                ended_at=now_iso(),
                message=f"{err['code']}: {err['message']}",
            )
            finalize(status_path, err, state="error", job_type=job.type, only_if_running=True)
            with self.lock:
                self.changed.notify_all()
            return
        aj = ActiveJob(job_id, job.kind, handle, status_path, log_path, tail=deque(maxlen=self.tail_lines))
        with self.lock:
            self.starting.pop(job_id, None)
            # cancelled (its record is final already) or the service began closing (the job stays
            # pending for the next start) while its runner started: stop the process, keep the record
            if self.closing or getattr(self.store.get(job_id), "state", None) == "cancelled":
                threading.Thread(target=_discard, args=(handle, self.cancel_grace_s), daemon=True).start()
                self.changed.notify_all()
                return
            aj.log_fh = open(log_path, "ab")
            aj.log_bytes = log_path.stat().st_size
            self.active[job_id] = aj
            self.store.update(
                job_id,
                state="running",
                started_at=now_iso(),
                pid=getattr(handle, "pid", None),
                runner_ref=getattr(handle, "runner_ref", None),
                message="Step 0/0",
            )
            threading.Thread(target=self._pump, args=(aj, job), name=f"voicelane-{job_id}", daemon=True).start()
            self.changed.notify_all()

    # --- the reader thread --------------------------------------------------------------------
    def _pump(self, aj: ActiveJob, job: JobRecord) -> None:
        try:
            for stream, line in aj.handle.lines():
                try:
                    self._on_line(aj, job, stream, line)
                except Exception:
                    log.exception("job %s: line handling failed", aj.id)
        finally:
            rc = aj.handle.wait()
            try:
                self._finish(aj, job, rc)
            except Exception:
                log.exception("job %s: finishing failed", aj.id)
                with self.lock:
                    self.active.pop(aj.id, None)
                    self.changed.notify_all()
            self.schedule()

    def _log(self, aj: ActiveJob, line: str) -> None:
        if aj.log_capped:
            return
        data = (line + "\n").encode("utf-8", "replace")
        if aj.log_bytes + len(data) > self.max_log_bytes:
            data = f"[voicelane] log truncated: the {self.max_log_bytes}-byte limit was reached\n".encode()
            aj.log_capped = True
        aj.log_fh.write(data)
        aj.log_fh.flush()
        aj.log_bytes += len(data)

    def _on_line(self, aj: ActiveJob, job: JobRecord, stream: str, line: str) -> None:
        line = line.rstrip("\r")
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + " [truncated]"
        self._log(aj, line)
        aj.tail.append(line)
        now = time.monotonic()
        if stream != "stdout":
            if now - aj.last_tail_flush > 1.0:
                aj.last_tail_flush = now
                self.store.update(aj.id, logs=list(aj.tail))
            return
        ev = parse_line(line)
        aj.view.apply(ev)
        if ev.kind == "OTHER" and job.options.get("mode") == "check":
            if aj.stdout_other_chars < CHECK_REPORT_MAX_CHARS:
                aj.stdout_other.append(line)
                aj.stdout_other_chars += len(line) + 1
        fields: dict[str, Any] = {}
        if aj.seq < self.max_events:
            aj.seq += 1
            self.store.add_event(aj.id, aj.seq, ev.kind, line)
            fields["seq"] = aj.seq
        if ev.kind == "PROGRESS":
            fields.update(progress_current=aj.view.current, progress_total=aj.view.total, message=aj.view.message)
        elif ev.kind == "STATS":
            fields["metadata"] = aj.view.metadata
        elif ev.kind == "ARTIFACT":
            fields["artifacts"] = aj.view.artifacts
        if ev.warning:
            fields["warnings"] = aj.view.warnings[-MAX_WARNINGS:]
        if now - aj.last_tail_flush > 1.0:
            aj.last_tail_flush = now
            fields["logs"] = list(aj.tail)
        self.store.update(aj.id, **fields)
        with self.lock:
            self.changed.notify_all()

    def _finish(self, aj: ActiveJob, job: JobRecord, rc: int | None) -> None:
        status = read_status(aj.status_path) if aj.status_path.is_file() else None
        status = status if isinstance(status, dict) else {}
        with self.lock:
            row = self.store.get(aj.id)
            cancel = aj.cancel_requested or bool(row and row.cancel_requested)
            error: dict[str, Any] | None = None
            metadata = dict(aj.view.metadata)
            if rc == 0:
                state = "done"
            elif cancel or rc in (130, -signal.SIGTERM, -signal.SIGINT):
                state = "cancelled"
                error = {
                    "code": "cancelled",
                    "message": "the job was cancelled",
                    "details": {"exitCode": rc},
                    "next_action": NEXT_ACTIONS["cancelled"],
                }
            else:
                state = "error"
                serr = status.get("error") if isinstance(status.get("error"), dict) else None
                if serr and serr.get("code"):
                    error = {
                        "code": serr.get("code"),
                        "message": serr.get("message", ""),
                        "details": serr.get("details") or {},
                        "next_action": status.get("next_action") or NEXT_ACTIONS.get(serr.get("code"), ""),
                        "blocked": status.get("state") == "blocked",
                    }
                elif (reported := reported_error(aj.stdout_other, aj.tail, rc)) is not None:
                    error = reported  # the child said why before it exited (no status file, e.g. check mode)
                else:
                    sig = -rc if isinstance(rc, int) and rc < 0 else None
                    how = f"signal {sig}" if sig else f"code {rc}"
                    error = {
                        "code": "internal_error",
                        "message": f"the job process exited with {how}",
                        "details": {"exitCode": rc},
                        "next_action": NEXT_ACTIONS["internal_error"],
                    }
            if job.options.get("mode") == "check" and aj.stdout_other:
                try:
                    metadata["report"] = json.loads("\n".join(aj.stdout_other))
                except ValueError:
                    pass
            if state == "done":
                message = aj.view.message
                if status.get("state") in (None, "running"):
                    finalize(aj.status_path, None, state="completed", job_type=job.type, only_if_running=True)
            elif state == "cancelled":
                message = f"Cancelled at step {aj.view.current}/{aj.view.total}"
                finalize(aj.status_path, error, state="cancelled", job_type=job.type, only_if_running=True)
            else:
                message = f"{error['code']}: {error['message']}"[:500] if error else "error"
                finalize(aj.status_path, error, state="error", job_type=job.type, only_if_running=True)
            message = final_message(job.type, state, rc) or message  # the old clients' wording
            if aj.log_fh is not None:
                aj.log_fh.close()
            self.store.update(
                aj.id,
                state=state,
                exit_code=rc,
                error=error,
                ended_at=now_iso(),
                message=message,
                logs=list(aj.tail),
                metadata=metadata,
                artifacts=aj.view.artifacts,
                progress_current=aj.view.current,
                progress_total=aj.view.total,
                warnings=aj.view.warnings[-MAX_WARNINGS:],
            )
            self.active.pop(aj.id, None)
            self.changed.notify_all()
        log.info("job %s finished: %s (exit %s)", aj.id, state, rc)

    # --- queries and control ----------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        row = self.store.get(job_id)
        if row is None:
            return None
        with self.lock:
            aj = self.active.get(job_id)
            if aj is not None:
                row.logs = list(aj.tail)
        return row

    def cancel(self, job_id: str, wait_s: float | None = None) -> JobRecord | None:
        """Cancel; returns the record, None when unknown. Raises ValueError when already finished."""
        with self.lock:
            row = self.store.get(job_id)
            if row is None:
                return None
            state = row.state
            if state == "cancelled":
                return row
            if state in ("done", "error"):
                raise ValueError(state)
            if state == "pending":
                err = {
                    "code": "cancelled",
                    "message": "the job was cancelled before it started",
                    "details": {},
                    "next_action": NEXT_ACTIONS["cancelled"],
                }
                self.store.update(
                    job_id,
                    state="cancelled",
                    cancel_requested=1,
                    error=err,
                    ended_at=now_iso(),
                    message="Cancelled before it started",
                )
                finalize(Path(row.status_path), err, state="cancelled", job_type=row.type, only_if_running=True)
                self.changed.notify_all()
                return self.store.get(job_id)
            aj = self.active.get(job_id)
            self.store.update(job_id, cancel_requested=1)
            if aj is None:  # running in the store but not ours: cannot happen after recover()
                return self.store.get(job_id)
            aj.cancel_requested = True
        threading.Thread(
            target=aj.handle.terminate, args=(self.cancel_grace_s,), daemon=True, name=f"voicelane-cancel-{job_id}"
        ).start()
        deadline = time.monotonic() + (wait_s if wait_s is not None else self.cancel_grace_s + 5)
        with self.lock:
            while job_id in self.active and time.monotonic() < deadline:
                self.changed.wait(0.2)
        return self.get(job_id)

    def wait_change(self, timeout: float) -> None:
        with self.lock:
            self.changed.wait(timeout)

    def counts(self) -> dict[str, int]:
        return {s: self.store.count(s) for s in ("pending", "running")}
