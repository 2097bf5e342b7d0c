"""A production endpoint that stays up while the model under it changes.

``mlops-workbook serve`` resolves ``@champion`` once, when it starts, and never sees a later
promotion or rollback. A production endpoint is the other way round: one address that
clients keep calling, with the model behind it switched in place. Here that address is
**nginx** (a maintained proxy from the system's packages, not a home-made one) in front of
MLflow's scoring servers (:class:`mlops_helpers.serving.ScoringServer`), one per version:

- ``switch(version)`` starts the version's own server if it is not running, smoke-tests it
  on its own URI (``models:/NAME/VERSION``), writes nginx's configuration with that server
  as the one that answers, checks it (``nginx -t``) and reloads nginx (SIGHUP). nginx's
  reload is graceful: new workers take new requests while the old ones finish theirs, so
  no request fails. The switch returns once requests are answered by the new version
  (every answer carries ``X-Model-Version``); a configuration nginx refused would keep the
  old one silently, so this is checked, not assumed.
- The version it replaced keeps running, so ``rollback()`` is a reload, well under a second.
- Everything nginx writes (configuration, pid, logs, temp files) is in the endpoint's own
  folder of the workspace, and the endpoint listens on 127.0.0.1 only. (Linux: the switch
  reads nginx's workers from /proc.)

The lesson's load (concurrent clients through a switch and a rollback) is in
``tests/integration/test_endpoint.py``; canary and shadow traffic are not here yet.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mlops_helpers import registry, serving
from mlops_helpers.config import ensure_workspace, show_path
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.parameters import check_name
from mlops_helpers.training import FEATURES
from mlops_helpers.workbook.processes import (
    HOST,
    LoopbackServer,
    ServerError,
    ServerProcess,
    check_port_free,
    find_nginx,
    free_port,
    venv_env,
)

VERSION_HEADER = "X-Model-Version"
SWITCH_TIMEOUT = 10.0  # seconds for nginx's new workers to answer with the new version


class EndpointError(WorkbookInputError, ValueError):
    """The endpoint cannot do what was asked (no nginx, a version it cannot serve)."""


def nginx_binary() -> str:
    """The nginx program, or EndpointError naming how to install it."""
    found = find_nginx()
    if found is None:
        raise EndpointError(
            "nginx is not installed; the endpoint runs MLflow's scoring servers behind it: "
            "run `make nginx` (as root it installs Debian's nginx-light) or install nginx"
        )
    return found


def config_text(folder: Path, port: int, upstreams: dict[str, int], live: str) -> str:
    """nginx's configuration: ``live``'s server answers on ``port``; every answer names the
    version that gave it."""
    versions = "\n".join(f"    {HOST}:{p} {v};" for v, p in sorted(upstreams.items()))
    temp = "\n".join(
        f"  {kind}_temp_path {folder / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# written by mlops_helpers.endpoint; rewritten at every switch
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
  log_format endpoint '$msec $request_id $status $model_version $request_time';
  # Bodies and answers stay in memory: nginx's workers may run as another user, who could
  # not write temp files in the endpoint's folder.
  client_body_buffer_size 8m;
  client_max_body_size 8m;
  proxy_buffer_size 64k;
  proxy_buffers 64 64k;
  proxy_max_temp_file_size 0;
  access_log {folder / "access.log"} endpoint;
{temp}
  map $upstream_addr $model_version {{
    default "";
{versions}
  }}
  upstream live {{ server {HOST}:{upstreams[live]}; keepalive 16; }}
  server {{
    listen {HOST}:{port};
    location / {{
      proxy_pass http://live;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      add_header {VERSION_HEADER} $model_version always;
    }}
  }}
}}
"""


@dataclass
class Endpoint(LoopbackServer):
    """nginx on 127.0.0.1:``port`` in front of one scoring server per version of ``name``."""

    name: str
    port: int | None = None
    live: str | None = None  # the version answering now
    previous: str | None = None  # the version the last switch replaced (rollback target)
    servers: dict[str, serving.ScoringServer] = field(default_factory=dict, repr=False)
    server: ServerProcess | None = field(default=None, repr=False)
    folder: Path | None = field(default=None, repr=False)

    def start(self, version: str | None = None) -> Endpoint:
        """Serve ``version`` (default: the champion) behind nginx; wait until it answers."""
        check_name("model name", self.name)
        nginx = nginx_binary()
        if self.port is None:
            self.port = free_port()
        else:
            check_port_free(self.port)  # PortInUse (exit 2) before anything starts
        version = self._resolve(version)
        self.folder = ensure_workspace("endpoint", self.name)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.folder / "temp" / kind).mkdir(parents=True, exist_ok=True, mode=0o700)
        try:  # whatever fails on the way, nothing this started is left running
            self._serve(version)
            self._write_config(version)
            self._check_config(nginx)
            self.server = ServerProcess(
                f"nginx for {self.name}",
                [nginx, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"),
                 "-g", "daemon off;"],
                f"{self.url}/ping",
                self.folder / "nginx.log",
                venv_env(),
            )  # fmt: skip
            self.server.start()
        except BaseException:
            self.stop()
            raise
        self.live = version
        return self

    def _resolve(self, version: str | None) -> str:
        if version is None:
            version = registry.current_version(self.name, registry.CHAMPION)
            if version is None:
                raise EndpointError(
                    f"model {self.name!r} has no champion to serve; deploy a version first "
                    "(mlops-workbook deploy) or name one"
                )
        return registry.check_version(self.name, version)

    def _serve(self, version: str) -> None:
        """Start ``version``'s own server unless it runs; smoke-test it on its own URI."""
        if version in self.servers:
            return
        uri = f"models:/{self.name}/{version}"
        server = serving.ScoringServer(uri).start()
        try:
            sample = serving.example_frame()
            expected = registry.load_sklearn(self.name, version).predict_proba(
                sample.loc[:, list(FEATURES)]
            )[:, 1]
            smoke = serving.smoke_test(server.url, sample, expected, latency_budget_ms=10_000.0)
        except BaseException:
            server.stop()
            raise
        if not smoke.passed:
            server.stop()
            failed = "; ".join(
                f"{c['check']} ({c['detail']})" for c in smoke.checks if not c["passed"]
            )
            raise EndpointError(
                f"version {version} failed its smoke test on {uri} ({failed}); the endpoint "
                "still serves what it served"
            )
        self.servers[version] = server

    def _write_config(self, live: str) -> None:
        ports = {v: s.port for v, s in self.servers.items()}
        path = self.folder / "nginx.conf"
        tmp = path.with_name(".nginx.conf.tmp")
        tmp.write_text(config_text(self.folder, self.port, ports, live))
        tmp.replace(path)

    def _check_config(self, nginx: str) -> None:
        done = subprocess.run(
            [nginx, "-t", "-q", "-p", str(self.folder), "-c", str(self.folder / "nginx.conf")],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ServerError(
                f"nginx refused the endpoint's configuration ({show_path(self.folder)}/"
                f"nginx.conf): {done.stderr.strip()}"
            )

    def switch(self, version: str) -> float:
        """Send every new request to ``version``; return the seconds until the endpoint's
        answers came from it. The version replaced keeps running, for ``rollback``."""
        if self.server is None or self.server.process is None:
            raise EndpointError("the endpoint is not running: start it first (Endpoint.start)")
        version = registry.check_version(self.name, version)
        if version == self.live:
            return 0.0
        self._serve(version)
        started = time.monotonic()
        self._write_config(version)
        self._check_config(nginx_binary())
        old_workers = _children(self.server.process.pid)
        self.server.process.send_signal(signal.SIGHUP)
        self._wait_for(version, started, old_workers)
        self.previous, self.live = self.live, version
        return time.monotonic() - started

    def rollback(self) -> float:
        """Switch back to the version the last switch replaced (still running: a reload)."""
        if self.previous is None:
            raise EndpointError(
                f"endpoint for {self.name!r} has served only version {self.live}: nothing to "
                "roll back to"
            )
        return self.switch(self.previous)

    def _wait_for(self, version: str, started: float, old_workers: set[int]) -> None:
        """Until the new version answers and every old worker has stopped taking new
        connections: from then on, every new request is answered by ``version``. (A new
        worker answers before the master has told the old ones to stop accepting.)"""
        body = serving.request_body(serving.example_frame().head(1))
        while time.monotonic() - started < SWITCH_TIMEOUT:
            if all(_leaving(pid) for pid in old_workers) and self.answered_by(body) == version:
                return
            time.sleep(0.01)
        raise ServerError(
            f"the endpoint still answered with version {self.live} {SWITCH_TIMEOUT:g} s after "
            f"the switch to {version}; read {show_path(self.folder)}/error.log"
        )

    def answered_by(self, body: bytes) -> str | None:
        """The version that answers one request now (None when the request failed)."""
        request = urllib.request.Request(
            f"{self.url}/invocations", body, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                resp.read()
                return resp.headers.get(VERSION_HEADER)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def stop(self) -> None:
        """Stop nginx, then every scoring server."""
        super().stop()
        self.server = None
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (nginx's workers of its master), from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _leaving(pid: int) -> bool:
    """True when worker ``pid`` is gone or shutting down (it no longer accepts connections:
    nginx retitles it "worker process is shutting down")."""
    try:
        return b"shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
