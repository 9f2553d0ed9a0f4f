"""Prepare ``make bench``: wrk, libev (for bjoern) and the virtualenv with the peers.

Run with the Python the project uses; the virtualenv ``benchmarks/.venv-bench`` is
created with that same interpreter. Debian packages come from ``apt-get`` (root is
needed; without it the step is skipped with a note). The peers are pinned in
``benchmarks/requirements-bench.txt``; wsgiserve is installed editable from the
repository. A stamp file skips the pip step while nothing has changed.

bjoern needs libev's headers to build. When ``libev-dev`` cannot be installed, or
bjoern fails to build, the benchmark runs without it and says why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
VENV = HERE / ".venv-bench"
REQUIREMENTS = HERE / "requirements-bench.txt"
STAMP = VENV / ".installed"
BJOERN = "bjoern==3.2.2"
BJOERN_NOTE = VENV / "bjoern-unavailable.txt"  # the benchmark prints this when present


def _run(argv: list[str]) -> bool:
    print("+ " + " ".join(argv), flush=True)
    return subprocess.run(argv, check=False).returncode == 0


def _apt_install(package: str) -> tuple[bool, str]:
    """Install a Debian package; (ok, reason when not)."""
    if shutil.which("apt-get") is None:
        return False, "apt-get not found (not a Debian-like system)"
    if os.geteuid() != 0:
        return False, f"not root; run: sudo apt-get install -y {package}"
    if not _run(["apt-get", "update", "-qq"]):
        return False, "apt-get update failed"
    if not _run(["apt-get", "install", "-y", "-qq", package]):
        return False, f"apt-get install {package} failed"
    return True, ""


def _dpkg_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return out.stdout.strip().endswith("installed")


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    ok, why = _apt_install("wrk")
    if not ok:
        raise SystemExit(f"error: wrk is required and could not be installed: {why}")


def _fingerprint() -> str:
    h = hashlib.sha256(REQUIREMENTS.read_bytes())
    h.update((REPO_ROOT / "pyproject.toml").read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def ensure_venv() -> None:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV} with {sys.executable}", flush=True)
        if not _run([sys.executable, "-m", "venv", str(VENV)]):
            raise SystemExit("error: could not create the virtualenv")
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    pip = [str(python), "-m", "pip", "install", "-q"]
    if not _run([*pip, "--upgrade", "pip"]):
        raise SystemExit("error: pip upgrade failed")
    if not _run([*pip, "-r", str(REQUIREMENTS), "-e", str(REPO_ROOT)]):
        raise SystemExit("error: installing the peers failed (see pip's output above)")
    ensure_bjoern(pip)
    STAMP.write_text(_fingerprint())


def ensure_bjoern(pip: list[str]) -> None:
    BJOERN_NOTE.unlink(missing_ok=True)
    if not _dpkg_installed("libev-dev"):
        ok, why = _apt_install("libev-dev")
        if not ok:
            BJOERN_NOTE.write_text(f"bjoern skipped: libev-dev could not be installed ({why})\n")
            print(BJOERN_NOTE.read_text(), end="")
            return
    if not _run([*pip, BJOERN]):
        BJOERN_NOTE.write_text("bjoern skipped: pip could not build it (see the output above)\n")
        print(BJOERN_NOTE.read_text(), end="")


def main() -> int:
    ensure_wrk()
    ensure_venv()
    print(f"benchmark environment ready: {VENV}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
