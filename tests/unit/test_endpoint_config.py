"""The endpoint's nginx configuration for each route, checked by nginx itself (``nginx -t``:
a configuration nginx refused at a reload would leave the old route serving silently), and
the canary share's bounds. `make test-unit` installs nginx first (`make nginx`)."""

from __future__ import annotations

import subprocess

import pytest

from mlops_helpers import endpoint
from mlops_helpers.endpoint import Route

PORTS = {"1": 18001, "2": 18002}
ROUTES = {
    "live only": Route("1"),
    "canary 0%": Route("1", "2", "canary", 0),
    "canary 30%": Route("1", "2", "canary", 30),
    "canary 100%": Route("1", "2", "canary", 100),
    "shadow": Route("1", "2", "shadow"),
}


def nginx_accepts(tmp_path, route: Route) -> subprocess.CompletedProcess:
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "temp" / kind).mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(endpoint.config_text(tmp_path, 18000, PORTS, route))
    return subprocess.run(
        [endpoint.nginx_binary(), "-t", "-q", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("kind", list(ROUTES))
def test_nginx_accepts_the_configuration_of_every_route(tmp_path, kind):
    checked = nginx_accepts(tmp_path, ROUTES[kind])
    assert checked.returncode == 0, checked.stderr


def test_a_share_is_split_only_between_0_and_100_and_the_shadow_is_mirrored(tmp_path):
    text = {k: endpoint.config_text(tmp_path, 18000, PORTS, r) for k, r in ROUTES.items()}
    assert "30% challenger" in text["canary 30%"]
    assert [k for k, t in text.items() if "split_clients" in t] == ["canary 30%"]
    assert "default challenger" in text["canary 100%"], "100% sends everything to it"
    assert [k for k, t in text.items() if "mirror /_shadow" in t] == ["shadow"]
    # a canary that stops answering falls back to the live version; the live one never
    assert "server 127.0.0.1:18001 backup" in text["canary 30%"]
    assert "backup" not in text["shadow"] and "backup" not in text["live only"]


@pytest.mark.parametrize("share", [-1, 101, 12.5, "10", True, None])
def test_a_canary_share_outside_0_to_100_is_refused_with_the_bounds(share):
    with pytest.raises(endpoint.EndpointError, match="whole percent from 0 to 100"):
        endpoint.check_share(share)


@pytest.mark.parametrize("share", [0, 1, 50, 100])
def test_a_canary_share_inside_the_bounds_is_kept(share):
    assert endpoint.check_share(share) == share
