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
- ``canary(version, share)`` sends ``share`` percent of requests (nginx's ``split_clients``
  on the request id) to a challenger, the rest to the live version; ``shadow(version)``
  sends the challenger a copy of every request (nginx's ``mirror``), whose answer is logged
  and never returned. Every server logs every answer under nginx's request id
  (:mod:`mlops_helpers.workbook.logged_app`), so ``scoring.read_online`` reads online
  predictions as it reads batch ones, and the two answers to one request join.
- A scoring server that stops (killed, crashed): its requests get a 503 naming why, and a
  canary's go to the live version, until ``heal()`` restarts it on its own port.
- ``mlops-workbook serve --endpoint`` runs one until Ctrl-C and follows the registry every
  second (:meth:`Endpoint.follow`): ``@champion`` (so ``deploy`` and ``rollback`` switch it)
  and the rollout that ``mlops-workbook rollout`` records (:func:`set_rollout`). The
  registry is the control plane: no control socket for another local user to reach.
- Everything nginx writes (configuration, pid, logs, temp files) and the prediction logs
  are in the endpoint's own folder of the workspace, and the endpoint listens on
  127.0.0.1 only. (Linux: the switch reads nginx's workers from /proc.)

The lesson (notebook 12) runs concurrent clients (:mod:`mlops_helpers.traffic`) through a
canary, a promotion and a rollback.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
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
from mlops_helpers.traffic import VERSION_HEADER  # clients read the header nginx sets here
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

REQUEST_HEADER = "X-Request-ID"
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


@dataclass(frozen=True)
class Route:
    """Where the endpoint sends requests: every one to ``live``, except that with a
    ``challenger`` in ``canary`` mode ``share`` percent go to it, and in ``shadow`` mode it
    gets a copy of each whose answer is logged and never returned."""

    live: str
    challenger: str | None = None
    mode: str = "off"  # "off", "canary" or "shadow"
    share: int = 0  # percent of requests, canary only

    def versions(self) -> set[str]:
        """The versions whose servers this route needs."""
        return {self.live} | ({self.challenger} if self.challenger else set())


def describe(route: Route) -> str:
    """The route in words: "version 2", "version 2, canary version 3 at 10%"."""
    text = f"version {route.live}"
    if route.mode == "canary":
        return f"{text}, canary version {route.challenger} at {route.share}%"
    if route.mode == "shadow":
        return f"{text}, shadow version {route.challenger}"
    return text


def check_share(share: object) -> int:
    """A canary share: a whole percent from 0 to 100, or EndpointError saying so."""
    if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
        raise EndpointError(
            f"canary share must be a whole percent from 0 to 100, got {share!r}; 0 sends the "
            "challenger nothing, 100 everything"
        )
    return share


PROXY = f"""      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header {REQUEST_HEADER} $request_id;
"""

UNAVAILABLE = (
    '{"error_code": "ENDPOINT_UNAVAILABLE", "message": "the scoring server for this request '
    'is not answering; the endpoint restarts it: retry in a few seconds"}'
)


def config_text(folder: Path, port: int, upstreams: dict[str, int], route: Route) -> str:
    """nginx's configuration for ``route``: every answer names the version that gave it and
    the request id that every server it reached logged it under."""
    versions = "\n".join(f"    {HOST}:{p} {v};" for v, p in sorted(upstreams.items()))
    temp = "\n".join(
        f"  {kind}_temp_path {folder / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    live = f"{HOST}:{upstreams[route.live]}"
    challenger = f"{HOST}:{upstreams[route.challenger]}" if route.challenger else None
    canary = route.mode == "canary" and route.share > 0
    blocks = [f"  upstream live {{ server {live}; keepalive 16; }}"]
    if challenger:
        # A canary that stops answering fails over to the live version; the live version
        # has no fallback (an older model answering silently is worse than a clear 503).
        backup = f" server {live} backup;" if canary else ""
        blocks.append(f"  upstream challenger {{ server {challenger};{backup} keepalive 16; }}")
    if canary and route.share < 100:  # nginx refuses "0%"; 100 is a plain map
        blocks.append(
            f'  split_clients "$request_id" $route {{ {route.share}% challenger; * live; }}'
        )
    else:
        blocks.append(
            f"  map $request_id $route {{ default {'challenger' if canary else 'live'}; }}"
        )
    blocks.append("  map $route $role { challenger canary; default live; }")
    mirror = (
        "      mirror /_shadow;\n      mirror_request_body on;\n"
        if (challenger and route.mode == "shadow")
        else ""
    )
    shadow = (
        f"""
    location = /_shadow {{
      internal;
      proxy_pass http://challenger/invocations;
{PROXY}      proxy_set_header X-Endpoint-Role shadow;
    }}"""
        if mirror
        else ""
    )
    upstream_blocks = "\n".join(blocks)
    return f"""# written by mlops_helpers.endpoint; rewritten at every switch
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
  log_format endpoint '$msec $request_id $status $model_version $role $request_time';
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
{upstream_blocks}
  server {{
    listen {HOST}:{port};
    location = /invocations {{
      proxy_pass http://$route;
{PROXY}      proxy_set_header X-Endpoint-Role $role;
{mirror}      add_header {VERSION_HEADER} $model_version always;
      add_header {REQUEST_HEADER} $request_id always;
      error_page 502 504 = @unavailable;
    }}
    location / {{
      proxy_pass http://live;
{PROXY}      add_header {VERSION_HEADER} $model_version always;
      error_page 502 504 = @unavailable;
    }}{shadow}
    location @unavailable {{
      default_type application/json;
      add_header Retry-After 2 always;
      add_header {REQUEST_HEADER} $request_id always;
      return 503 '{UNAVAILABLE}';
    }}
  }}
}}
"""


@dataclass
class Endpoint(LoopbackServer):
    """nginx on 127.0.0.1:``port`` in front of one scoring server per version of ``name``;
    every server logs its answers in ``log_folder`` (one JSON Lines file per version)."""

    name: str
    port: int | None = None
    route: Route | None = None  # where requests go now
    previous: str | None = None  # the version the last switch replaced (rollback target)
    servers: dict[str, serving.ScoringServer] = field(default_factory=dict, repr=False)
    server: ServerProcess | None = field(default=None, repr=False)
    folder: Path | None = field(default=None, repr=False)
    _refused: Route | None = field(default=None, repr=False)

    @property
    def live(self) -> str | None:
        """The version that answers every request the challenger does not."""
        return None if self.route is None else self.route.live

    @property
    def log_folder(self) -> Path:
        return endpoint_folder(self.name) / "predictions"

    def start(self, version: str | None = None) -> Endpoint:
        """Serve ``version`` (default: the champion) behind nginx; wait until it answers.

        nginx that loses a port picked here (none given) before it binds it is started again
        on another, twice at most (:meth:`LoopbackServer._on_a_picked_port`), as the scoring
        servers behind it are."""
        check_name("model name", self.name)
        nginx = nginx_binary()
        picked = self.port is None
        if not picked:
            check_port_free(self.port)  # PortInUse (exit 2) before anything starts
        version = self._resolve(version)
        self.folder = endpoint_folder(self.name)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.folder / "temp" / kind).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_folder.mkdir(exist_ok=True, mode=0o700)
        try:  # whatever fails on the way, nothing this started is left running
            self._serve(version)
            route = Route(version)
            self._on_a_picked_port(picked, lambda: self._start_nginx(nginx, route), free_port)
        except BaseException:
            self.stop()
            raise
        self.route = route
        return self

    def _start_nginx(self, nginx: str, route: Route) -> None:
        self._write_config(route)
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

    def _resolve(self, version: str | None) -> str:
        if version is None:
            version = registry.current_version(self.name, registry.CHAMPION)
            if version is None:
                raise EndpointError(
                    f"model {self.name!r} has no champion to serve; deploy a version first "
                    "(mlops-workbook deploy) or name one"
                )
        return registry.check_version(self.name, version)

    def _server(self, version: str, port: int | None = None) -> serving.ScoringServer:
        return serving.ScoringServer(
            f"models:/{self.name}/{version}",
            port=port,
            prediction_log=self.log_folder / f"version={version}.jsonl",
            log_version=version,
        )

    def _serve(self, version: str) -> None:
        """Start ``version``'s own server unless it runs; smoke-test it on its own URI."""
        if version in self.servers:
            return
        server = self._server(version).start()
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
                f"version {version} failed its smoke test on {server.model_uri} ({failed}); "
                "the endpoint still serves what it served"
            )
        self.servers[version] = server

    def _write_config(self, route: Route) -> None:
        ports = {v: s.port for v, s in self.servers.items()}
        path = self.folder / "nginx.conf"
        tmp = path.with_name(".nginx.conf.tmp")
        tmp.write_text(config_text(self.folder, self.port, ports, route))
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

    def _running(self) -> None:
        if self.server is None or self.server.process is None:
            raise EndpointError("the endpoint is not running: start it first (Endpoint.start)")

    def prepare(self, version: str) -> float:
        """Start ``version``'s own server and smoke-test it on its own URI, sending it no
        traffic: the first move of a change, made ahead, as a rollout starts the new
        version before it shifts any traffic; a later change to it is then only a reload.
        Return the seconds it took; a version that fails its smoke test is refused here."""
        self._running()
        version = registry.check_version(self.name, version)
        started = time.monotonic()
        self._serve(version)
        return time.monotonic() - started

    def switch(self, version: str) -> float:
        """Send every new request to ``version`` (and none to a challenger); return the
        seconds until the endpoint's answers came from it. The version replaced keeps
        running, for ``rollback``."""
        self._running()
        version = registry.check_version(self.name, version)
        if self.route == Route(version):
            return 0.0
        previous = self.live
        seconds = self._apply(Route(version))
        if version != previous:
            self.previous = previous
        return seconds

    def canary(self, version: str, share: int) -> float:
        """Send ``share`` percent of new requests to ``version``, the rest to the live one."""
        share = check_share(share)
        return self._apply(Route(self.live, self._challenger(version, "a canary"), "canary", share))

    def shadow(self, version: str) -> float:
        """Send ``version`` a copy of every request; its answers are logged, never returned."""
        return self._apply(Route(self.live, self._challenger(version, "a shadow"), "shadow"))

    def _challenger(self, version: str, what: str) -> str:
        """``version`` checked as a challenger: registered, and not the live version."""
        self._running()
        version = registry.check_version(self.name, version)
        if version == self.live:
            raise EndpointError(
                f"version {version} is the live version already; {what} is another version "
                "(the challenger)"
            )
        return version

    def rollback(self) -> float:
        """Switch back to the version the last switch replaced (still running: a reload)."""
        if self.previous is None:
            raise EndpointError(
                f"endpoint for {self.name!r} has served only version {self.live}: nothing to "
                "roll back to"
            )
        return self.switch(self.previous)

    def _apply(self, route: Route) -> float:
        """Serve ``route``'s versions (each smoke-tested first), reload nginx with it, and
        return the seconds until every new request follows it."""
        for version in sorted(route.versions()):
            self._serve(version)
        started = time.monotonic()
        self._write_config(route)
        self._check_config(nginx_binary())
        old_workers = _children(self.server.process.pid)
        self.server.process.send_signal(signal.SIGHUP)
        self._wait_for(route, started, old_workers)
        self.route = route
        return time.monotonic() - started

    def _wait_for(self, route: Route, started: float, old_workers: set[int]) -> None:
        """Until every old worker has stopped taking new connections and the live version
        answers: from then on, every new request follows ``route``. (A new worker answers
        before the master has told the old ones to stop accepting.)"""
        while time.monotonic() - started < SWITCH_TIMEOUT:
            if all(_leaving(pid) for pid in old_workers) and self.answered_by() == route.live:
                return
            time.sleep(0.01)
        raise ServerError(
            f"the endpoint did not take its new route ({route}) {SWITCH_TIMEOUT:g} s after "
            f"the reload; read {show_path(self.folder)}/error.log"
        )

    def answered_by(self) -> str | None:
        """The version answering the endpoint's health check now (the live one; None when
        it failed). Not an ``/invocations`` call, so the prediction log holds only clients'."""
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=10) as resp:
                resp.read()
                return resp.headers.get(VERSION_HEADER)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def follow(self) -> str | None:
        """Take the route the registry asks for (:func:`wanted_route`) and restart stopped
        servers; say what changed (None: nothing). A route that fails (a version that
        fails its smoke test) raises once and is not tried again until the registry asks
        for something else; the endpoint keeps serving what it served."""
        restarted = self.heal()
        wanted = wanted_route(self.name)
        if wanted in (self.route, self._refused):
            return (
                f"restarted the scoring server of version {', '.join(restarted)}"
                if (restarted)
                else None
            )
        previous = self.live
        try:
            seconds = self._apply(wanted)
        except EndpointError:
            self._refused = wanted
            raise
        if wanted.live != previous:
            self.previous = previous
        return f"now serving {describe(wanted)} (took {seconds:.2f} s)"

    def heal(self) -> list[str]:
        """Restart, on its own port, every scoring server that has stopped (killed, or
        crashed); return their versions. Until then nginx answers their requests with a
        503 saying so (a canary's go to the live version)."""
        restarted = []
        for version, server in list(self.servers.items()):
            if server.process is not None and server.process.poll() is None:
                continue
            port = server.port
            server.stop()
            self.servers[version] = self._server(version, port).start()
            restarted.append(version)
        return restarted

    def stop(self) -> None:
        """Stop nginx, then every scoring server."""
        super().stop()
        self.server = None
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


ROLLOUT_TAG = "endpoint.rollout"  # a registered model's tag: the challenger's rollout
MODES = ("off", "canary", "shadow")


def set_rollout(
    name: str, mode: str, share: int = 0, version: str | None = None, reason: str = ""
) -> Route:
    """Record how a running endpoint should route ``name``'s challenger (``version``,
    default ``@challenger``): ``canary`` with ``share`` percent of requests, ``shadow``, or
    ``off``. The registry is the endpoint's control plane: ``serve --endpoint`` follows it,
    as it follows ``@champion`` for promotions and rollbacks. Checked before it is written."""
    if mode not in MODES:
        raise EndpointError(f"rollout mode {mode!r} is not one of {', '.join(MODES)}")
    share = check_share(share) if mode == "canary" else 0
    champion = registry.current_version(name, registry.CHAMPION)
    if champion is None:
        raise EndpointError(
            f"model {name!r} has no champion; deploy a version first (mlops-workbook deploy)"
        )
    if mode != "off":
        if version is None:
            version = registry.current_version(name, registry.CHALLENGER)
            if version is None:
                raise EndpointError(
                    f"model {name!r} has no challenger to {mode}; register one "
                    "(mlops-workbook deploy --train registers and gates it) or name a version"
                )
        version = registry.check_version(name, version)
        if version == champion:
            raise EndpointError(f"version {version} is the champion; a {mode} is another version")
    record = {
        "mode": mode,
        "version": version if mode != "off" else None,
        "share": share,
        # a rollout is against this champion: any later move of it (a promotion, a
        # rollback, even back to this version) ends it
        "champion": champion,
        "champion_moves": registry.moves(name, registry.CHAMPION),
        "actor": os.environ.get("MLOPS_ACTOR") or getpass.getuser(),
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    registry.client().set_registered_model_tag(name, ROLLOUT_TAG, json.dumps(record))
    return wanted_route(name)


def wanted_route(name: str) -> Route:
    """The route the registry asks for: ``@champion`` live, and the recorded rollout while
    the champion is the one it was recorded against (a promotion or a rollback ends it: a
    rolled-back version is not canaried again by an old rollout)."""
    model = registry.registered(name)  # one read a second for `serve --endpoint`, not three
    champion = model and model.aliases.get(registry.CHAMPION)
    if not champion:
        raise EndpointError(f"model {name!r} has no champion to serve; deploy a version first")
    champion, tags = str(champion), model.tags
    try:
        rollout = json.loads(tags.get(ROLLOUT_TAG, "{}"))
    except ValueError:
        rollout = {}
    version, mode = rollout.get("version"), rollout.get("mode", "off")
    ended = (rollout.get("champion"), rollout.get("champion_moves")) != (
        champion,
        registry.moves(name, registry.CHAMPION, tags),
    )
    if mode not in ("canary", "shadow") or ended:
        return Route(champion)
    return Route(champion, str(version), mode, int(rollout.get("share", 0)))


def endpoint_folder(name: str) -> Path:
    """The endpoint's own folder of the workspace (nginx's files, the prediction logs)."""
    check_name("model name", name)
    return ensure_workspace("endpoint", name)


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
