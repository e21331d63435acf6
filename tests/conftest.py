"""Shared fixtures. Service fixtures are prefixed ``svc_`` (tests/test_service*.py).

Auth (docs/security.md): a service makes a per-install token at first start
(``<VOICELANE_DATA_DIR>/api_token``) and its training/admin routes need it even on loopback.
``SvcServer.client`` carries it automatically (``Authorization: Bearer``); ``srv.token`` is the
token and ``srv.auth_headers`` the header dict for clients you build yourself; ``srv.bare_client()``
sends no token. A test that passes its own ``VOICELANE_API_TOKEN`` manages auth itself: its
``srv.client`` carries no token (``srv.token`` is still set). ``VOICELANE_AUTH="off"`` turns the
token off on loopback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import CORPORA, consent_file, mini_corpus, tiny_train_argv

SVC_PROD_PROFILE = "svc_prod"


# ----------------------------------------------------------------------------------------------
# service: real servers (uvicorn via `python -m voicelane serve`) on free loopback ports


def svc_free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def svc_inprocess_server(tmp_path: Path, profile: str, voice, **settings):
    """A real uvicorn server in this process whose only voice is ``voice`` (a fake backend for the
    queue/timeout paths); ``settings`` override the service Settings. Yields ``(url, client)``."""
    import threading
    from types import SimpleNamespace

    import httpx
    import uvicorn

    from voicelane.service.core.config import Settings
    from voicelane.service.core.voices import ServedVoice, VoiceRegistry
    from voicelane.service.main import create_app

    class StaticRegistry(VoiceRegistry):
        def refresh(self):
            with self._lock:
                self.served = {profile: ServedVoice(profile, tmp_path, {"lane": "production"}, (), "0" * 64, voice, 4)}
            return {"loaded": [profile], "refused": [], "removed": []}

    base = dict(data_dir=tmp_path / "var", bundle_roots=[], data_roots=[tmp_path], voice_rescan_s=0)
    app = create_app(Settings(**(base | settings)), voices=StaticRegistry([]))
    port = svc_free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=30)
    try:
        yield SimpleNamespace(url=url, client=client)
    finally:
        client.close()
        server.should_exit = True
        t.join(30)


class SvcServer:
    """A `voicelane serve` child process. ``restart()`` keeps the data dir (and the port)."""

    def __init__(self, workdir: Path, env: dict[str, str], host: str = "127.0.0.1"):
        self.workdir = workdir
        self.env = env
        self.host = host
        self.port = svc_free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "server.log"
        self._client = None
        self.token: str | None = None
        self.client_carries_token = "VOICELANE_API_TOKEN" not in env

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def bare_client(self, **kw):
        """An httpx client without the token (the caller closes it)."""
        import httpx

        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), **kw)

    def _load_token(self) -> None:
        if "VOICELANE_API_TOKEN" in self.env:
            self.token = self.env["VOICELANE_API_TOKEN"]
            return
        path = Path(self.env.get("VOICELANE_DATA_DIR", self.workdir / "var")) / "api_token"
        self.token = path.read_text().strip() if path.is_file() else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self):
        import httpx

        if self._client is None:
            headers = self.auth_headers if self.client_carries_token else {}
            self._client = httpx.Client(base_url=self.url, timeout=120, headers=headers)
        return self._client

    def start(self, timeout: float = 120.0) -> "SvcServer":
        import httpx

        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicelane", "serve", "--host", self.host, "--port", str(self.port)],
            env=self.env,
            cwd=str(self.workdir),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health/live", timeout=2).status_code == 200:
                    self._load_token()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-20000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def restart(self, kill: bool = False) -> "SvcServer":
        self.stop(signal.SIGKILL if kill else signal.SIGTERM)
        return self.start()


@pytest.fixture(scope="session")
def svc_start_server():
    """Factory: ``svc_start_server(workdir, **VOICELANE_env)`` -> a started SvcServer (stopped at the end)."""
    servers: list[SvcServer] = []

    def start(workdir: Path, host: str = "127.0.0.1", **env_vars: str) -> SvcServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_")}
        env.pop("TRAIN_STATUS_PATH", None)
        env.update(
            {
                "VOICELANE_DATA_DIR": str(workdir / "var"),
                "VOICELANE_TRAIN_THREADS": "1",
                "VOICELANE_CANCEL_GRACE_S": "5",
                "VOICELANE_VOICE_RESCAN_S": "0",
                "VOICELANE_LOG_LEVEL": "INFO",
                # /api/train/status also reads runs made outside the service: only this test's
                "VOICELANE_TRAIN_STATUS_DIRS": str(workdir / "artifacts"),
                # a body without a dataset never trains the full demo corpus in a test: the
                # default run has no data here (400 missing_audio_path) unless a test sets one
                "VOICELANE_TRAIN_DEFAULT_DATA": str(workdir / "no_default_dataset"),
                "VOICELANE_TRAIN_DEFAULT_BASE": "none",
                "VOICELANE_TRAIN_DEFAULT_PRESET": "tiny",
                "VOICELANE_TRAIN_DEFAULT_STEPS": "2",
                "VOICELANE_TRAIN_DEFAULT_ONNX": "0",
            }
        )
        env.update({k: str(v) for k, v in env_vars.items()})
        srv = SvcServer(workdir, env, host)
        servers.append(srv)
        return srv.start()

    yield start
    for s in servers:
        s.stop()


# ----------------------------------------------------------------------------------------------
# service: data


@pytest.fixture(scope="session")
def svc_kal_corpus(tmp_path_factory) -> Path:
    """12 real clips of the embedded kal corpus (waits for the corpus to finish rendering)."""
    meta = CORPORA / "kal" / "metadata.csv"
    deadline = time.monotonic() + 900
    while not meta.is_file():
        if time.monotonic() > deadline:
            pytest.skip("corpora/kal is not rendered")
        time.sleep(5)
    root = tmp_path_factory.mktemp("svc_data")
    mini_corpus(root / "kal12", n=12)
    consent_file(root / "consent.txt")
    return root / "kal12"


@dataclass
class SvcBundle:
    root: Path  # holds bundles/<profile>/voice_bundle
    profile: str

    @property
    def bundle_dir(self) -> Path:
        return self.root / "bundles" / self.profile / "voice_bundle"


@pytest.fixture(scope="session")
def svc_prod_bundle(tmp_path_factory, svc_kal_corpus) -> SvcBundle:
    """A real production-lane bundle from the tiny preset (built once per session, ~1 min)."""
    out = tmp_path_factory.mktemp("svc_prod_run")
    env = dict(os.environ, TRAIN_STATUS_PATH=str(out / "train_status.json"))
    cmd = tiny_train_argv(
        "--no-onnx",
        data=svc_kal_corpus,
        profile=SVC_PROD_PROFILE,
        out=out,
        eval_max=2,
        consent_statement=svc_kal_corpus.parent / "consent.txt",
        gates='{"wer_max": 1.5}',
    )
    res = subprocess.run(cmd, env=env, cwd=str(out), capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-4000:]
    b = SvcBundle(out, SVC_PROD_PROFILE)
    assert (b.bundle_dir / "manifest.json").is_file()
    return b


@pytest.fixture(scope="session")
def svc_start_voice_server(tmp_path_factory, svc_start_server, svc_prod_bundle):
    """Factory: ``svc_start_voice_server(name, **VOICELANE_env)`` -> a started server that speaks the
    tiny production voice, has no rate limit and a 120 s speak timeout, and cannot start a training
    job (its data root does not exist); ``VOICELANE_env`` adds to or overrides that."""

    def start(name: str, **env_vars: str) -> SvcServer:
        work = tmp_path_factory.mktemp(name)
        defaults = {
            "VOICELANE_BUNDLE_ROOTS": str(svc_prod_bundle.root),
            "VOICELANE_DATA_ROOTS": str(work / "no_such_root"),
            "VOICELANE_SPEAK_TIMEOUT_S": "120",
            "VOICELANE_RATE_LIMIT_PER_MIN": "0",
        }
        return svc_start_server(work, **(defaults | env_vars))

    return start
