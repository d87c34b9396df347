"""Start the real Cog HTTP server (coglet) on 127.0.0.1 and call it as Replicate does."""

from __future__ import annotations

import base64
import mimetypes
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def decode_data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise ValueError(f"not a base64 data URI: {uri[:60]}")
    return base64.b64decode(payload)


def project_view(folder: Path, schema: Path) -> Path:
    """A folder that looks like the project but bundles ``schema`` as ``.cog/openapi_schema.json`` (what
    ``cog build`` does for the class it is configured with); the rest are links to the real files."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name not in (".cog", ".git") and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry)
    (folder / ".cog").mkdir(exist_ok=True)
    (folder / ".cog" / "openapi_schema.json").write_bytes(schema.read_bytes())
    return folder


class CogServer:
    """``python -m cog.server.http`` in a subprocess; stops with POST /shutdown (or kill).

    ``predictor`` is the ``predict.py`` class to serve; ``project`` the folder it runs in (default: the project,
    whose bundled schema is the combined predictor's; see :func:`project_view` for another class's).
    """

    def __init__(
        self,
        weights_dir: Path,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        *,
        predictor: str = "Predictor",
        project: Path = ROOT,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        # coglet starts its worker with a bare `python`: this interpreter's folder must come first on PATH.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            {
                "COG_PREDICT_TYPE_STUB": f"predict.py:{predictor}",
                "PORT": str(self.port),
                "WEIGHTS_DIR": str(weights_dir),
                "OMP_WAIT_POLICY": "PASSIVE",
                "PYTHONUNBUFFERED": "1",
                **(extra_env or {}),
            }
        )
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=project,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log_path

    def health(self) -> dict:
        return requests.get(f"{self.url}/health-check", timeout=5).json()

    def wait_ready(self, timeout_s: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout_s
        status: dict = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                status = self.health()
                if status.get("status") in ("READY", "SETUP_FAILED"):
                    return status
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready after {timeout_s} s (last {status}):\n{self.log_text()}")

    def predict(self, inputs: dict, timeout_s: float = 600.0) -> requests.Response:
        """POST a synchronous prediction; retries briefly on 409, which coglet can answer for a moment after
        the previous prediction's response while it frees the slot (clients such as Replicate retry too)."""
        for attempt in range(20):
            response = requests.post(f"{self.url}/predictions", json={"input": inputs}, timeout=timeout_s)
            if response.status_code != 409:
                break
            time.sleep(0.05 * (attempt + 1))
        return response

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        try:
            requests.post(f"{self.url}/shutdown", timeout=5)
            self.process.wait(timeout=20)
        except (requests.RequestException, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=20)
        finally:
            self._log.close()
