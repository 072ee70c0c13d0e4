"""The Dockerfile and the scripts it runs (deploy/install.sh, entrypoint.sh, healthcheck.py, train-bundle.sh).

There is no Docker engine here: the structure of the Dockerfile is checked statically, and the scripts it calls
are run outside Docker: the serving install in a fresh virtualenv (~30 s: pip installs the serving dependencies),
the entrypoint against a real bundle, the health check against a running xApp, the bundle trainer with torch.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
SCRIPTS = {"install": REPO / "deploy" / "install.sh", "entrypoint": REPO / "deploy" / "entrypoint.sh",
           "healthcheck": REPO / "deploy" / "healthcheck.py", "train-bundle": REPO / "deploy" / "train-bundle.sh"}
VENV_BIN = Path(sys.executable).parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for ins, args in instructions(DOCKERFILE.read_text()):
        if ins == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, flags=re.I)
            current = m.group(2) or f"stage{len(result)}"
            result[current] = [("FROM", m.group(1))]
        elif current is not None:
            result[current].append((ins, args))
    return result


def stage_args(stage: list[tuple[str, str]], ins: str) -> list[str]:
    return [a for i, a in stage if i == ins]


def inherited(name: str, all_stages: dict, ins: str) -> list[str]:
    """Values of `ins` in a stage and the stages it is built FROM (nearest last)."""
    chain = []
    while name in all_stages:
        chain.append(name)
        name = all_stages[name][0][1]
    return [a for n in reversed(chain) for a in stage_args(all_stages[n], ins)]


# -- structure ---------------------------------------------------------------------------------------------------
def test_dockerfile_stages_and_targets():
    s = stages()
    assert list(s)[-1] == "serve", "the default target (last stage) must be the serving image"
    assert {"base", "wheel", "serve-env", "trainer-env", "trainer", "serve"} <= set(s)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim\S*$", DOCKERFILE.read_text(), flags=re.M)
    assert s["base"][0] == ("FROM", "${PYTHON_IMAGE}")
    # serve carries the venv built without the train extra; trainer the one with it
    assert "--from=serve-env /opt/venv /opt/venv" in stage_args(s["serve"], "COPY")
    assert "--from=trainer-env /opt/venv /opt/venv" in stage_args(s["trainer"], "COPY")
    assert any("ms3m-install serve " in r for r in stage_args(s["serve-env"], "RUN"))
    assert any("ms3m-install trainer " in r for r in stage_args(s["trainer-env"], "RUN"))
    assert any("ms3m-install wheel " in r for r in stage_args(s["wheel"], "RUN"))


@pytest.mark.parametrize("target", ["serve", "trainer"])
def test_final_stages_run_as_non_root(target):
    s = stages()
    users = inherited(target, s, "USER")
    assert users and users[-1].split(":")[0] == "10001"
    base_runs = " ".join(stage_args(s["base"], "RUN"))
    assert "--uid 10001" in base_runs and "chown 10001:10001 /bundles" in base_runs
    assert inherited(target, s, "ENTRYPOINT")[-1] == '["ms3m-entrypoint"]'


def test_serve_stage_healthcheck_expose_and_env():
    s = stages()
    (hc,) = stage_args(s["serve"], "HEALTHCHECK")
    cmd = json.loads(hc.split(" CMD ", 1)[1])
    assert cmd[:2] == ["python", "/usr/local/bin/ms3m-healthcheck"]
    assert cmd[cmd.index("--path") + 1] == "/ric/v1/health/ready"
    assert stage_args(s["trainer"], "HEALTHCHECK") == ["NONE"]
    (expose,) = stage_args(s["serve"], "EXPOSE")
    assert sorted(expose.split()) == ["50051", "8080"]
    assert stage_args(s["serve"], "CMD") == ['["serve"]']
    env = " ".join(inherited("serve", s, "ENV"))
    assert "MS3M_BUNDLES='[\"/bundles/default\"]'" in env
    assert "MS3M_HTTP_PORT=8080" in env and "MS3M_GRPC_PORT=50051" in env


def test_trainer_installs_torch_from_the_cpu_index_at_the_pinned_version():
    s = stages()
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in stage_args(s["trainer-env"], "ARG")
    train = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    (pin,) = [r for r in train if re.fullmatch(r"torch==\d+\.\d+\.\d+", r)]  # exact, or PyPI pulls CUDA wheels
    r = subprocess.run([str(SCRIPTS["install"]), "torch-requirement", str(REPO)], env=script_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == pin, r.stderr


def test_copied_files_exist_and_scripts_are_executable():
    s = stages()
    for name, stage in s.items():
        for args in stage_args(stage, "COPY"):
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            if any(p.startswith("--from=") for p in shlex.split(args)):
                continue
            *sources, dest = parts
            for src in sources:
                src = src.replace("${BUNDLE_DIR}", "deploy/bundles")
                assert (REPO / src).exists(), f"stage {name}: COPY source {src} is missing"
                assert not ignored_by_dockerignore(src), f"stage {name}: {src} is excluded by .dockerignore"
                if dest.startswith("/usr/local/bin/"):
                    assert os.access(REPO / src, os.X_OK), f"{src} is not executable"
    assert "BUNDLE_DIR=deploy/bundles" in stage_args(s["runtime"], "ARG")
    for path in SCRIPTS.values():
        assert os.access(path, os.X_OK), f"{path} is not executable"
    for name in ("install", "entrypoint", "train-bundle"):
        r = subprocess.run(["sh", "-n", str(SCRIPTS[name])], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def ignored_by_dockerignore(path: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pat) for pat in patterns for prefix in prefixes)


def test_dockerignore_keeps_the_build_context_small():
    for path in (".venv", ".git", "tests", "runs", "models/__pycache__"):
        assert ignored_by_dockerignore(path), path


# -- scripts, run outside Docker -------------------------------------------------------------------------------------
def script_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MS3M_", "DBAAS_")) and k != "CONFIG_FILE"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_entrypoint_dispatch():
    ep = str(SCRIPTS["entrypoint"])
    r = subprocess.run([ep, "--version"], env=script_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ms3m "), r.stderr  # options go to ms3m
    r = subprocess.run([ep, "python", "-c", "print('as given')"], env=script_env(), capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == "as given"  # programs on PATH run as they are
    r = subprocess.run([ep, "models", "--help"], env=script_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage: ms3m models" in r.stdout  # subcommands go to ms3m


def test_entrypoint_reports_a_missing_bundle(tmp_path):
    r = subprocess.run([str(SCRIPTS["entrypoint"])], env=script_env(MS3M_BUNDLES=json.dumps([str(tmp_path / "nope")])),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no model bundle at" in r.stderr and "Traceback" not in r.stderr


def start_serve(python_bin: Path, bundle: Path, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """The image's command (entrypoint, no arguments = `ms3m serve`) with the given environment's bin first on
    PATH; returns the process and the REST port it printed."""
    env = script_env(MS3M_BUNDLES=json.dumps([str(bundle)]), MS3M_HTTP_PORT="0", MS3M_GRPC_PORT="0",
                     MS3M_HTTP_HOST="127.0.0.1", MS3M_GRPC_HOST="127.0.0.1", MS3M_BUFFER="memory",
                     OMP_NUM_THREADS="1")
    env["PATH"] = f"{python_bin}{os.pathsep}{env['PATH']}"
    proc = subprocess.Popen([str(SCRIPTS["entrypoint"])], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"REST http://localhost:(\d+)", line):
            return proc, int(m.group(1))
    proc.kill()
    pytest.fail("ms3m serve did not print its REST address:\n" + "".join(lines))


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status


@pytest.fixture(scope="module")
def s4d_bundle(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="building the test bundle needs torch (the `train` extra)")
    from tests.service.helpers import make_bundle

    return make_bundle(tmp_path_factory.mktemp("docker-bundle"), "s4d")


def test_entrypoint_serves_and_healthcheck_passes(s4d_bundle, tmp_path):
    proc, port = start_serve(VENV_BIN, s4d_bundle, tmp_path)
    try:
        assert get(port, "/ric/v1/health/alive") == 200
        hc = [sys.executable, str(SCRIPTS["healthcheck"]), "--port", str(port)]
        deadline = time.monotonic() + 30
        while (r := subprocess.run(hc, capture_output=True, text=True, timeout=30)).returncode != 0:
            assert time.monotonic() < deadline, r.stderr
            time.sleep(0.2)
        r = subprocess.run([*hc, "--path", "/no/such/path"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "HTTP 404" in r.stderr
    finally:
        assert stop(proc) == 0


async def test_healthcheck_fails_while_not_ready_and_when_nothing_listens(tmp_path):
    from tests.service.helpers import running_xapp

    hc = [sys.executable, str(SCRIPTS["healthcheck"])]
    async with running_xapp([]) as xapp:  # no bundle: alive, not ready
        proc = await asyncio.create_subprocess_exec(*hc, "--port", str(xapp.http_port),
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 1 and b"HTTP 503" in err and b"no model bundle loaded" in err
        port = xapp.http_port
    r = subprocess.run([*hc, "--port", str(port), "--timeout", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1


def test_train_bundle_writes_once_and_cleans_up_on_failure(tmp_path):
    pytest.importorskip("torch", reason="ms3m train needs torch (the `train` extra)")
    tb = str(SCRIPTS["train-bundle"])
    bundle = tmp_path / "bundles" / "default"
    env = script_env(MS3M_TRAIN_OUT=str(tmp_path / "run"), OMP_NUM_THREADS="1")
    args = ["--model", "s4d", "--data", "synthetic", "--steps", "2", "--eval-every", "1", "--window", "32",
            "--batch-size", "4", "--set", "d_model=8", "--set", "n_layers=1", "--quiet"]
    r = subprocess.run([tb, str(bundle), *args], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (bundle / "config.json").is_file() and (bundle / "step.onnx").is_file()
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["default"]  # no .new / .old left behind
    mtime = (bundle / "config.json").stat().st_mtime_ns
    r = subprocess.run([tb, str(bundle), *args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "bundle exists" in r.stdout
    assert (bundle / "config.json").stat().st_mtime_ns == mtime
    r = subprocess.run([tb, "--force", str(bundle), "--model", "no-such-model"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and (bundle / "config.json").stat().st_mtime_ns == mtime  # the old bundle stays
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["default"]
    r = subprocess.run([tb], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "ms3m-train-bundle" in r.stderr


# -- the serving install in a fresh virtualenv (what `docker build` runs) -------------------------------------------
# the wheel stage's COPY sources
BUILD_CONTEXT = ["pyproject.toml", "README.md", "proto", "contract", "models", "service", "bench"]


def test_build_context_list_matches_the_wheel_stage():
    copies = [p for a in stage_args(stages()["wheel"], "COPY") for p in shlex.split(a)[:-1] if not p.startswith("-")]
    assert sorted(c for c in copies if not c.startswith("deploy/")) == sorted(BUILD_CONTEXT)


def test_serving_install_in_a_fresh_venv_has_no_torch_and_serves(s4d_bundle, tmp_path):
    """deploy/install.sh wheel + serve, as the Dockerfile runs them, into a new virtualenv (pip's default
    configuration: here a local find-links, else PyPI); then the image's command starts the service."""
    src = tmp_path / "src"
    src.mkdir()
    for name in BUILD_CONTEXT:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = script_env(PYTHON=str(py))

    def install(*args: str) -> str:
        r = subprocess.run([str(SCRIPTS["install"]), *args], env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"install.sh {args[0]}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    install("wheel", str(src), str(tmp_path / "wheels"))
    (wheel,) = (tmp_path / "wheels").glob("ms3m_xapp-*.whl")
    pin = install("torch-requirement", str(wheel)).strip()  # what the trainer stage installs from the CPU index
    assert pin == install("torch-requirement", str(REPO)).strip() and pin.startswith("torch==")
    assert "ms3m serving install ok" in install("serve", str(wheel))
    r = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    proc, port = start_serve(venv / "bin", s4d_bundle, tmp_path)
    try:
        assert get(port, "/ric/v1/health/alive") == 200
    finally:
        assert stop(proc) == 0
