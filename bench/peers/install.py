"""The peers' install folder, `.peers/` at the repository's root (git ignores it): the
Restate server from the npm registry and one venv per peer from PyPI, each at pinned
versions, installed only when missing (or when its pins changed). Never the project's
.venv."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PEERS = ROOT / ".peers"

RESTATE_SERVER = "@restatedev/restate-server"
RESTATE_SERVER_VERSION = "1.7.12"


class InstallError(RuntimeError):
    pass


@dataclass(frozen=True)
class Installed:
    restate_server: Path  # the native binary the npm package ships
    restate_python: Path  # .peers/restate-venv/bin/python
    dbos_python: Path  # .peers/dbos-venv/bin/python

    def bin(self, venv_python: Path, name: str) -> Path:
        return venv_python.parent / name


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _head(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[:lines])


def _restate_binary() -> Path | None:
    found = sorted(
        (PEERS / "restate" / "node_modules" / "@restatedev").glob(
            "restate-server-*/bin/restate-server"
        )
    )
    return found[0] if found else None


def _version_of(binary: Path) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return ""
    return out.stdout.strip()


def ensure_restate_server() -> Path:
    binary = _restate_binary()
    wanted = f"restate-server {RESTATE_SERVER_VERSION}"
    if binary is not None and _version_of(binary) == wanted:
        print(f"  {RESTATE_SERVER}@{RESTATE_SERVER_VERSION}: already in {binary.parent.parent}")
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(
            "npm not found: the Restate server comes from the npm registry; install Node.js "
            "(20 or later) with npm"
        )
    folder = PEERS / "restate"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "package.json").write_text('{"private": true}\n')
    print(
        f"  installing {RESTATE_SERVER}@{RESTATE_SERVER_VERSION} with npm into {folder} ...",
        flush=True,
    )
    began = time.monotonic()
    # --ignore-scripts: the package's binary comes as a platform package (an optional
    # dependency); no install script is needed, and none (telemetry) is run.
    done = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(folder),
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            f"{RESTATE_SERVER}@{RESTATE_SERVER_VERSION}",
        ],
        capture_output=True,
        text=True,
        cwd=folder,
    )
    if done.returncode != 0:
        raise InstallError(
            f"npm install {RESTATE_SERVER}@{RESTATE_SERVER_VERSION} failed (exit "
            f"{done.returncode}); is the npm registry reachable? npm said:\n"
            f"{_head(done.stderr or done.stdout)}"
        )
    binary = _restate_binary()
    if binary is None or _version_of(binary) != wanted:
        raise InstallError(
            f"npm installed {RESTATE_SERVER} but no restate-server {RESTATE_SERVER_VERSION} "
            f"binary for this platform ({sys.platform}) is in {folder}/node_modules/@restatedev"
        )
    print(f"  {wanted} installed in {time.monotonic() - began:.1f} s")
    return binary


def ensure_venv(name: str, lock: Path) -> Path:
    """`.peers/<name>`, a venv with exactly `lock` (pip --require-hashes)."""
    venv = PEERS / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if python.exists() and marker.exists() and marker.read_text().strip() == digest:
        print(f"  {name}: already in {venv} (pins of {lock.name})")
        return python
    locked = [
        line for line in lock.read_text().splitlines() if line and not line.startswith((" ", "#"))
    ]
    wanted = [
        line.strip()
        for line in lock.with_suffix(".in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    print(
        f"  creating {venv}, installing {', '.join(wanted)} ({lock.name}: {len(locked)} "
        "packages, hashes checked) ...",
        flush=True,
    )
    began = time.monotonic()
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True
    )
    if made.returncode != 0:
        raise InstallError(f"python -m venv {venv} failed:\n{_tail(made.stderr)}")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--require-hashes", "-r", str(lock)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise InstallError(
            f"pip install -r {lock.name} into {venv} failed (exit {done.returncode}); is PyPI "
            f"reachable? pip said:\n{_tail(done.stderr or done.stdout)}"
        )
    marker.write_text(digest + "\n")
    print(f"  {name} ready in {time.monotonic() - began:.1f} s")
    return python


def ensure_installed(restate: bool = True, dbos: bool = True) -> Installed:
    PEERS.mkdir(exist_ok=True)
    print(f"peers' install folder: {PEERS}", flush=True)
    missing = Path("/nonexistent")
    return Installed(
        restate_server=ensure_restate_server() if restate else missing,
        restate_python=ensure_venv("restate-venv", HERE / "restate.lock") if restate else missing,
        dbos_python=ensure_venv("dbos-venv", HERE / "dbos.lock") if dbos else missing,
    )


def pip_versions(python: Path, *names: str) -> dict[str, str]:
    """The installed versions of `names` in the venv of `python` (for the report)."""
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True)
    if out.returncode != 0:
        return {}
    result: dict[str, str] = json.loads(out.stdout)
    return result
