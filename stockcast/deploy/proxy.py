"""The reverse proxy in front of the local replicas: nginx from the OS packages, configured and driven by us.

Callers reach one address; ``Routes`` says which replicas answer there and with what share of requests, which ones
answer on the preview address (a new version checked before it takes traffic), and which one receives a copy of every
request (shadow). ``NginxProxy.route`` writes the configuration, has nginx check it, and reloads it: nginx's reload
starts new workers with the new routes and lets the old ones finish their requests, so a switch loses none. A
request that meets a replica going away or failing (refused connection, 500/502/503) is retried on another one
(``proxy_next_upstream``; ``/predict`` is a pure function of its input, so a retried POST is safe), while the failing
replica's own ``/metrics`` still count the error that judges it.

Each configuration carries a generation number that the proxy answers at ``/__stockcast/route``: ``route`` returns
once the proxy answers the new generation and every worker of the earlier one has finished, which is what makes a
switch observable and atomic for the strategies built on it (``stockcast.deploy.fleet``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from stockcast.deploy.targets import DeployError

ROUTE_PATH = "/__stockcast/route"
"""Answers the generation of the routes in force; never proxied."""
INSTALL_HINT = "install nginx from the OS packages (Debian/Ubuntu: sudo apt-get install nginx)"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
"""nginx's temporary folders, all in the work folder (their defaults are system paths that need root)."""
UNREACHABLE = "127.0.0.1:9"
"""A backend that is always down: an upstream without replicas still needs one server line (answers 502)."""


def nginx_executable() -> str | None:
    """Where nginx is installed: on the PATH, or in the sbin folders a user's PATH often lacks."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class Backend:
    """A replica the proxy sends requests to: its ``host:port`` and its relative share of requests; a ``backup`` gets
    only the requests that every other replica failed (the old version while a new one is watched)."""

    address: str
    weight: int = 1
    backup: bool = False


@dataclass(frozen=True)
class Routes:
    """Who answers where: ``live`` on the proxy's address, ``preview`` on its preview address, and ``shadow`` gets a
    copy of every live request (its answers are discarded)."""

    live: tuple[Backend, ...] = ()
    preview: tuple[Backend, ...] = ()
    shadow: tuple[Backend, ...] = ()


def weighted(addresses: Sequence[str], others: Sequence[str], percent: int) -> tuple[Backend, ...]:
    """Backends giving ``addresses`` together ``percent`` % of the requests and ``others`` the rest, each group split
    evenly (nginx weights are whole numbers: the smallest that give exactly those shares)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    mine = percent * len(others) if others else 1
    theirs = (100 - percent) * len(addresses) if addresses else 1
    common = math.gcd(mine, theirs) or 1
    backends = [Backend(address, mine // common) for address in addresses if percent > 0]
    backends += [Backend(address, theirs // common) for address in others if percent < 100]
    return tuple(backends)


def render_config(routes: Routes, *, listen: str, preview_listen: str, workdir: Path, generation: int) -> str:
    """The nginx configuration of ``routes`` (pure: what ``NginxProxy.route`` writes)."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers then read the work folder made by this user
    temp = "\n".join(f"    {kind}_temp_path {workdir / 'tmp' / kind};" for kind in TEMP_PATHS)
    mirror = "        mirror /__mirror;\n        mirror_request_body on;\n" if routes.shadow else ""
    shadow_location = (
        "        location = /__mirror {\n            internal;\n            proxy_pass http://shadow$request_uri;\n"
        "        }\n"
        if routes.shadow
        else ""
    )
    return f"""# Written by stockcast.deploy.proxy; generation {generation}. Changes here are overwritten.
{user}worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_next_upstream error timeout http_500 http_502 http_503 non_idempotent;
    proxy_next_upstream_tries 3;
    proxy_connect_timeout 2s;
{_upstream("live", routes.live)}{_upstream("preview", routes.preview)}{_upstream("shadow", routes.shadow)}
    server {{
        listen {listen};
        # No keep-alive towards callers: on a reload nginx closes idle kept-alive connections, and a request sent on
        # one at that moment is lost; a new connection a request always reaches the workers of the routes in force.
        keepalive_timeout 0;
        location = {ROUTE_PATH} {{ return 200 "{generation}\\n"; }}
        location / {{
{mirror}            proxy_pass http://live;
        }}
{shadow_location}    }}
    server {{
        listen {preview_listen};
        location / {{ proxy_pass http://preview; }}
    }}
}}
"""


def _upstream(name: str, backends: Sequence[Backend]) -> str:
    # max_fails=0: a replica is never taken out for its errors (a retried request goes elsewhere anyway); nginx's
    # default takes out, for 10 s, every replica that failed once, and at a few % errors that soon means all of them.
    servers = [
        f"        server {backend.address} weight={backend.weight} max_fails=0{' backup' if backend.backup else ''};"
        for backend in backends
    ]
    return "    upstream {name} {{\n{servers}\n        keepalive 16;\n    }}\n".format(
        name=name, servers="\n".join(servers or [f"        server {UNREACHABLE} down;"])
    )


@dataclass
class NginxProxy:
    """nginx on ``host:port`` (and ``preview_port``), its configuration, pid file and logs in ``workdir``."""

    workdir: Path
    port: int
    preview_port: int
    host: str = "127.0.0.1"
    generation: int = 0
    _master: psutil.Process | None = None

    @property
    def endpoint(self) -> str:
        """The address callers use."""
        return f"http://{self.host}:{self.port}"

    @property
    def preview_endpoint(self) -> str:
        """The address of the version being checked before it takes traffic."""
        return f"http://{self.host}:{self.preview_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "nginx.conf"

    def route(self, routes: Routes, timeout: float = 30.0) -> None:
        """Put ``routes`` in force (starting nginx the first time) and return once the proxy serves them;
        ``DeployError`` when nginx refuses the configuration (the routes in force stay) or cannot start."""
        executable = nginx_executable()
        if executable is None:
            raise DeployError(f"the local strategies need a reverse proxy: {INSTALL_HINT}")
        for kind in TEMP_PATHS:
            (self.workdir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        generation = self.generation + 1
        candidate = self.workdir / "nginx.next.conf"
        candidate.write_text(
            render_config(
                routes,
                listen=f"{self.host}:{self.port}",
                preview_listen=f"{self.host}:{self.preview_port}",
                workdir=self.workdir,
                generation=generation,
            )
        )
        checked = subprocess.run(
            [executable, "-t", "-q", "-p", str(self.workdir), "-c", str(candidate)],
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode != 0:
            raise DeployError(f"nginx refused the routes ({candidate}):\n{checked.stderr.strip()}")
        candidate.replace(self.config_path)
        earlier_workers = self._workers()
        if self._master is not None and self.running():
            self._master.send_signal(signal.SIGHUP)  # graceful reload
        else:
            started = subprocess.Popen(
                [executable, "-p", str(self.workdir), "-c", str(self.config_path), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=(self.workdir / "nginx.out").open("ab"),
                start_new_session=True,
            )
            self._master = psutil.Process(started.pid)
        self._wait_for(generation, earlier_workers, timeout)
        self.generation = generation

    def adopt(self) -> bool:
        """Take over the nginx that an earlier process started with this work folder and left running (its pid
        file names it, and it runs this folder's configuration); True when there was one. Routes then reload it
        rather than start another, so callers never lose the address."""
        try:
            master = psutil.Process(int((self.workdir / "nginx.pid").read_text().strip()))
            ours = str(self.config_path) in master.cmdline()
        except (OSError, ValueError, psutil.Error):
            return False
        if not ours:
            return False
        self._master = master
        match = re.search(r"generation (\d+)\.", self.config_path.read_text())
        self.generation = int(match.group(1)) if match else 0
        return self.running()

    @property
    def pid(self) -> int | None:
        """The nginx master's process id, once started or adopted."""
        return self._master.pid if self._master is not None else None

    def running(self) -> bool:
        """Whether nginx runs."""
        try:
            return self._master is not None and self._master.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def stop(self) -> None:
        """Stop nginx (gracefully, then for good after 10 s); nothing when it does not run."""
        master, self._master = self._master, None
        if master is None:
            return
        try:
            master.send_signal(signal.SIGQUIT)
            master.wait(timeout=10)
        except psutil.TimeoutExpired:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait(timeout=10)
        except psutil.NoSuchProcess:
            return

    def _wait_for(self, generation: int, earlier_workers: list[psutil.Process], timeout: float) -> None:
        """Until the proxy answers ``generation`` and every worker of the earlier configuration has exited: after a
        reload, an old worker may still accept a connection for a moment, and would route it the old way."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = httpx.get(f"{self.endpoint}{ROUTE_PATH}", timeout=1.0)
                current = answer.status_code == 200 and answer.text.strip() == str(generation)
                if current and not any(worker.is_running() for worker in earlier_workers):
                    return
            except httpx.HTTPError:
                pass
            if not self.running():
                raise DeployError(f"nginx exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise DeployError(f"nginx did not serve routes generation {generation} within {timeout:g} s")
            time.sleep(0.05)

    def _workers(self) -> list[psutil.Process]:
        """nginx's worker processes now (none before it starts)."""
        if not self.running():
            return []
        try:
            return self._master.children()  # type: ignore[union-attr]
        except psutil.Error:
            return []

    def _log_tail(self) -> str:
        logs = [self.workdir / "nginx.out", self.workdir / "error.log"]
        return "\n".join(path.read_text(errors="replace")[-2000:] for path in logs if path.exists())
