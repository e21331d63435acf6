"""The Docker lane (docker/voice-train-prod/). No Docker engine runs here, so: the Dockerfile's
install step is checked against what CI installs, and the entrypoint script runs for real."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from test_ops_support import ENTRYPOINT, REPO, TINY, base_env, consent_of, error_line, kv_of, quick_data, run_script
from voicelane.bundle import validate_voice_bundle
from voicelane.ops.docker_lane import REPORT_BEGIN, REPORT_END, parse_report
from voicelane.protocol import fold

DOCKER_DIR = REPO / "docker" / "voice-train-prod"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (DOCKER_DIR / "Dockerfile").read_text("utf-8")
    logical, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        logical.append(cur + line)
        cur = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in logical]


def shell_commands(script: Path) -> list[str]:
    lines = [ln.strip() for ln in script.read_text("utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def pip_installs(lines: list[str]) -> list[list[str]]:
    """The argument lists of every `pip install` in these shell lines (options that only set
    verbosity dropped)."""
    out = []
    for line in lines:
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        cmds, cur = [], []
        for tok in lex:
            if tok in (";", "&&", "||", "|", "&"):
                cmds.append(cur)
                cur = []
            else:
                cur.append(tok)
        cmds.append(cur)
        for toks in cmds:
            pips = [k for k, t in enumerate(toks) if t == "pip" or t.endswith("/pip") or t.endswith("/pip3")]
            for k in pips:
                if "install" in toks[k:]:
                    args = toks[toks.index("install", k) + 1 :]
                    out.append([a for a in args if a not in ("-q", "--quiet", "--no-cache-dir")])
                    break
    return out


def test_dockerfile_install_step_is_the_ci_install():
    """CI runs .ci/run -> scripts/test.sh -> scripts/setup.sh; the image runs that same setup.sh, so
    it installs the same pinned set (torch==2.13.0, then -c requirements.lock -e .[test,ray])."""
    ci = (REPO / ".ci" / "run").read_text("utf-8")
    assert "scripts/test.sh" in ci
    assert "scripts/setup.sh" in (REPO / "scripts" / "test.sh").read_text("utf-8")
    runs = [args for ins, args in dockerfile_instructions() if ins == "RUN"]
    install = [r for r in runs if "scripts/setup.sh" in r]
    assert len(install) == 1, runs
    assert re.search(r"(^|\s)bash scripts/setup\.sh(\s|$)", install[0])
    # no other package installation anywhere in the image: the pins live in setup.sh only
    assert pip_installs(runs) == [], pip_installs(runs)
    setup = pip_installs(shell_commands(REPO / "scripts" / "setup.sh"))
    specs = [
        a
        for args in setup
        for k, a in enumerate(args)
        if not a.startswith(("-", ">", "<", "2>")) and (k == 0 or args[k - 1] not in ("-c", "--constraint"))
    ]
    torch = [s for s in specs if s.strip('"').startswith("torch")]
    assert torch == ["torch==2.13.0"], specs
    assert any(args[:2] == ["-c", "requirements.lock"] for args in setup), setup
    assert any("-e" in args and any(a.startswith(".[test") for a in args) for args in setup), setup
    assert all("==" in s or s.startswith("pip>=") or s.startswith(".[") for s in specs), specs
    lock = REPO / "requirements.lock"
    if lock.is_file():
        pins = [ln.split("#")[0].strip() for ln in lock.read_text("utf-8").splitlines()]
        pins = [p for p in pins if p and not p.startswith("-")]
        assert pins and all("==" in p or " @ " in p for p in pins), [p for p in pins if "==" not in p][:5]
        assert any(re.match(r"torch==2\.13\.0($|\+)", p) for p in pins)
    # the build context carries the lock and setup.sh, and never the host's venv
    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text("utf-8").split()
    assert ".venv" in ignore and ".git" in ignore
    assert not any(p in ignore for p in ("requirements.lock", "scripts", "pyproject.toml", "src"))


def test_dockerfile_runs_as_non_root_and_installs_nothing_at_run_time():
    ins = dockerfile_instructions()
    names = [i for i, _ in ins]
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(k for k, i in enumerate(names) if i == "USER")
    install = next(k for k, (i, a) in enumerate(ins) if i == "RUN" and "setup.sh" in a)
    assert install < last_user
    assert all(i != "RUN" for i in names[last_user:]), "nothing may run (or install) after dropping root"
    env_after = " ".join(a for i, a in ins[install:] if i == "ENV")
    assert "PIP_NO_INDEX=1" in env_after
    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    assert entry and "entrypoint.sh" in entry[-1]
    assert any(i == "ARG" and a.startswith("BASE_IMAGE=") for i, a in ins)  # the CUDA base build arg
    assert any(i == "ARG" and a.startswith("TORCH_INDEX_URL=") and "cpu" in a for i, a in ins)  # CPU torch default
    for path in (ENTRYPOINT, REPO / "src" / "voicelane" / "ops" / "docker_lane.py"):
        assert not re.search(r"pip\S* install|apt-get install", path.read_text("utf-8")), path


def _entrypoint(env: dict, timeout: float = 900):
    proc = subprocess.run(
        ["nice", "-n", "10", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = proc.stdout.splitlines()
    assert REPORT_BEGIN in lines and lines[-1] == REPORT_END, proc.stdout[-3000:] + proc.stderr[-3000:]
    block = lines[lines.index(REPORT_BEGIN) :]
    return proc, lines, block, parse_report(lines)


def test_entrypoint_real_success(tmp_path):
    data = quick_data(tmp_path / "data")
    out = tmp_path / "out"
    env = base_env(
        AUDIO_PATH=str(data),
        OUT_DIR=str(out),
        CONSENT_STATEMENT=str(consent_of(data)),
        VOICE_PROFILE_ID="docker_ep",
        VOICELANE_PYTHON=sys.executable,
        **TINY,
    )
    proc, lines, block, rep = _entrypoint(env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert block[1:6] == [
        "outcome=success",
        "exit_code=0",
        f"train_status_path={out}/train_status.tts_prod_train.json",
        f"log_path={out}/train.log",
        "train_status_present=true",
    ]
    assert rep["bundle_path"] == str(out / "bundles" / "docker_ep" / "voice_bundle")
    assert validate_voice_bundle(rep["bundle_path"]).ok
    # the lane's protocol passes through on stdout before the block
    view = fold(lines[: lines.index(REPORT_BEGIN)])
    assert view.total > 0 and view.current == view.total
    assert json.loads((out / "train_status.tts_prod_train.json").read_text())["state"] == "completed"
    assert "PROGRESS" in (out / "train.log").read_text("utf-8")


def test_entrypoint_reports_the_lanes_real_exit_code(tmp_path):
    data = quick_data(tmp_path / "data", n=2, with_consent=False)
    out = tmp_path / "out"
    env = base_env(
        AUDIO_PATH=str(data), OUT_DIR=str(out), VOICE_PROFILE_ID="docker_ep", VOICELANE_PYTHON=sys.executable, **TINY
    )
    proc, _lines, block, rep = _entrypoint(env)
    assert proc.returncode == 2
    assert rep["outcome"] == "failed" and rep["exit_code"] == "2" and rep["error_code"] == "consent_missing"
    assert rep["train_status_present"] == "true"
    assert any("consent" in line for line in block)  # the log tail is in the block


def test_entrypoint_without_a_dataset_mount(tmp_path):
    out = tmp_path / "out"
    env = base_env(AUDIO_PATH=str(tmp_path / "no-data"), OUT_DIR=str(out), VOICELANE_PYTHON=sys.executable)
    proc, _lines, _block, rep = _entrypoint(env, timeout=300)
    assert proc.returncode == 2 and rep["exit_code"] == "2"
    assert rep["error_code"] == "missing_audio_path" and rep["train_status_present"] == "true"


def test_entrypoint_block_even_when_python_cannot_start(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = base_env(OUT_DIR=str(out), VOICELANE_PYTHON=str(tmp_path / "no-python"))
    proc, _lines, _block, rep = _entrypoint(env, timeout=60)
    assert proc.returncode == 127
    assert rep["outcome"] == "failed" and rep["exit_code"] == "127" and rep["train_status_present"] == "false"


FAKE_DOCKER = r'''#!{python}
"""Test double of the docker engine: `build` succeeds, `run` executes the real entrypoint with
the container's mounts mapped back to host paths. Records its argv."""
import json, os, sys
args = sys.argv[1:]
with open({record!r}, "a") as fh:
    fh.write(json.dumps(args) + "\n")
if args[0] == "build":
    print("fake build: ok")
    sys.exit(0)
# a container starts from the image's environment, not the caller's
env = {{k: os.environ[k] for k in ("PATH", "HOME", "LANG", "SOURCE_DATE_EPOCH") if k in os.environ}}
mounts, i = {{}}, 1
while i < len(args):
    a = args[i]
    if a == "-v":
        host, cont = args[i + 1].split(":")[:2]
        mounts[cont] = host
        i += 2
    elif a == "-e":
        k, v = args[i + 1].split("=", 1)
        env[k] = v
        i += 2
    elif a in ("--name", "--user", "--gpus"):
        i += 2
    else:
        i += 1
for k in ("AUDIO_PATH", "OUT_DIR", "CONSENT_STATEMENT", "HELDOUT_PATH"):
    for cont, host in mounts.items():
        if k in env and (env[k] == cont or env[k].startswith(cont + "/")):
            env[k] = host + env[k][len(cont):]
env["VOICELANE_PYTHON"] = sys.executable
os.execve({entrypoint!r}, [{entrypoint!r}], env)
'''


def test_orchestrator_reads_the_containers_report(tmp_path):
    """local_docker end to end against a stand-in engine that runs the real entrypoint: the lane's
    code and exit code come back from the report block; the dataset is mounted read-only."""
    record = tmp_path / "docker-argv.jsonl"
    fake = tmp_path / "docker"
    fake.write_text(FAKE_DOCKER.format(python=sys.executable, record=str(record), entrypoint=str(ENTRYPOINT)))
    fake.chmod(0o755)
    data = quick_data(tmp_path / "data", n=2, with_consent=False)
    run = run_script(
        base_env(
            TRAIN_BACKEND="local_docker",
            DOCKER=str(fake),
            AUDIO_PATH=str(data),
            OUT_DIR=str(tmp_path / "out"),
            LOG_PATH=str(tmp_path / "orch.log"),
            TRAIN_STATUS_PATH=str(tmp_path / "status.json"),
            VOICE_PROFILE_ID="docker_orch",
            **TINY,
        )
    )
    line = error_line(run)
    assert line.startswith("[tts-prod][error] consent_missing "), run.stdout[-3000:]
    assert run.rc == 2 and kv_of(line)["exit_code"] == "2" and kv_of(line)["backend"] == "local_docker"
    calls = [json.loads(x) for x in record.read_text().splitlines()]
    assert calls[0][0] == "build" and calls[1][0] == "run"
    assert f"{data}:/data:ro" in calls[1]
    assert json.loads((tmp_path / "status.json").read_text())["error"]["code"] == "consent_missing"
