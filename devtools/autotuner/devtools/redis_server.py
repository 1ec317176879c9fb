"""Runs Debian's redis-server on a free 127.0.0.1 port for `make redis`, `make demo` and the tests."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from autotuner.devtools.ports import free_port, wait_for_port, wait_until_closed


class RedisServer:
    """A redis-server child process. ``appendonly`` keeps data across :meth:`restart`, like production."""

    def __init__(self, *, port: int | None = None, appendonly: bool = False, data_dir: Path | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.appendonly = appendonly
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="autotuner-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def main() -> None:
    """`make redis`: start redis-server in the foreground-detached style of the other local services."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".local"))
    parser.add_argument("command", choices=["start", "stop"])
    args = parser.parse_args()
    state: Path = args.state_dir
    state.mkdir(parents=True, exist_ok=True)
    pid_file, url_file = state / "redis.pid", state / "redis.url"
    if args.command == "stop":
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            pid_file.unlink()
        if url_file.exists():
            port = urlsplit(url_file.read_text().strip()).port
            url_file.unlink()
            if port is not None:
                wait_until_closed(port)  # `make redis-down` returns with the port free
        return
    if pid_file.exists() and url_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 0)
            print(url_file.read_text().strip())
            return
        except ProcessLookupError:
            pass
    server = RedisServer(data_dir=state / "redis")
    server.data_dir.mkdir(exist_ok=True)
    server.start()
    assert server.process is not None
    pid_file.write_text(str(server.process.pid))
    url_file.write_text(server.url + "\n")
    print(server.url)
    sys.stdout.flush()
    os._exit(0)  # leave the server running after we exit, as `make redis` promises


if __name__ == "__main__":
    main()
