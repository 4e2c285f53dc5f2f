"""docker-compose.yml and deploy/nginx.conf: a structure a person can run as is.

There is no Docker engine here, so the file is checked for what `docker compose up` relies on:
the services and their order, named volumes, health checks, and the proxy in front.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.notifiers.channels import DingTalkChannel, configured_channels
from tests.conftest import RunningServer, free_port, world_serving
from tests.support import World

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("server-1", "server-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def nginx() -> str:
    return (ROOT / "deploy" / "nginx.conf").read_text()


def location(config: str, name: str) -> str:
    found = re.search(r"location " + re.escape(name) + r" \{(.*?)\n    \}", config, re.S)
    assert found is not None, f"no location {name}"
    return found.group(1)


def test_postgres_keeps_its_data_in_a_named_volume_and_says_when_it_is_ready(
    compose: dict[str, Any],
) -> None:
    postgres = compose["services"]["postgres"]
    [volume] = postgres["volumes"]
    name, path = volume.split(":")
    assert path == "/var/lib/postgresql/data"
    assert name in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["image"].startswith("postgres:15")


def test_migrations_run_once_before_any_server_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert "dispatch db upgrade" in " ".join(migrate["command"])
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in SERVERS:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }


def test_the_servers_share_one_database_one_secret_and_are_checked_on_readyz(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    first, second = (services[name] for name in SERVERS)
    assert first["environment"] == second["environment"] == services["migrate"]["environment"]
    env = first["environment"]
    assert env["DISPATCH_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["DISPATCH_DATABASE_URL"]
    secret_dir = str(Path(env["DISPATCH_SECRET_FILE"]).parent)
    for service in (first, second, services["migrate"]):
        assert any(v.endswith(":" + secret_dir) for v in service["volumes"])
    assert first["command"] == ["dispatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "/readyz" in " ".join(first["healthcheck"]["test"])
    assert first["restart"] == "unless-stopped"


def test_every_dispatch_variable_in_the_compose_file_is_a_setting(compose: dict[str, Any]) -> None:
    known = {f"DISPATCH_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        unknown = {k for k in env if k.startswith("DISPATCH_")} - known
        assert not unknown, f"{name}: {unknown}"


# What an operator's .env holds (docs/deploy.md): the two values compose refuses to start without.
CREDENTIALS = {"POSTGRES_PASSWORD": "pg-password", "DISPATCH_SECRET_KEY": "k" * 48}


class Refused(Exception):
    """Compose refuses the file: a required variable has no value."""


def interpolated(value: str, shell: dict[str, str]) -> str:
    """``value`` as compose interpolates it from ``shell``: ``${NAME:-default}`` is the default
    when NAME is unset or empty, and ``${NAME:?message}`` refuses the whole file then."""

    def one(found: re.Match[str]) -> str:
        name, operator, argument = found.groups()
        given = shell.get(name)
        if operator == ":-":
            return given or argument
        if not given:
            raise Refused(f"required variable {name} is missing a value: {argument}")
        return given

    return re.sub(r"\$\{(\w+)(:[-?])([^}]*)\}", one, value)


def servers_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, **shell: str
) -> Settings:
    """The servers' settings as compose makes them when the shell (or .env) sets ``shell``
    besides the required credentials."""
    shell = {**CREDENTIALS, **shell}
    for name, value in compose["services"]["server-1"]["environment"].items():
        monkeypatch.setenv(name, interpolated(str(value), shell))
    return Settings()


def test_the_database_password_and_the_signing_secret_are_required_never_defaulted(
    compose: dict[str, Any],
) -> None:
    """A default was used silently by a later `docker compose up` from a shell without the
    exports: the servers logged in with "dispatch" (refused by the database initialised with
    the real password), or signed with another secret (every token refused)."""
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{(POSTGRES_PASSWORD|DISPATCH_SECRET_KEY)([^}]*)\}", text)
    assert {name for name, _ in uses} == set(CREDENTIALS)
    for name, rest in uses:
        assert rest.startswith(":?"), f"${{{name}{rest}}} must be required"
    for missing in CREDENTIALS:
        # Unset, or exported empty: refused either way.
        for shell in (
            {**CREDENTIALS, missing: ""},
            {k: v for k, v in CREDENTIALS.items() if k != missing},
        ):
            for service in ("postgres", "migrate", *SERVERS):
                values = [str(v) for v in compose["services"][service]["environment"].values()]
                if any(missing in value for value in values):
                    with pytest.raises(Refused, match=missing):
                        [interpolated(value, shell) for value in values]
    env = compose["services"]["postgres"]["environment"]
    assert interpolated(env["POSTGRES_PASSWORD"], CREDENTIALS) == CREDENTIALS["POSTGRES_PASSWORD"]


def docker_compose() -> list[str] | None:
    """The compose v2 command line here, if any: the docker CLI's plugin or the standalone."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_refuses_the_file_without_the_credentials_and_reads_them_from_env_file(
    tmp_path: Path,
) -> None:
    """What an operator sees: `docker compose` names the missing variable and does nothing;
    with the values in .env beside the file, any later shell gets the same ones."""
    command = docker_compose()
    if command is None:
        pytest.skip("no docker compose here")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "nginx.conf", tmp_path / "deploy")
    shell = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}

    def config() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, "config"], cwd=tmp_path, env=shell, capture_output=True, text=True
        )

    refused = config()
    assert refused.returncode != 0
    assert "POSTGRES_PASSWORD" in refused.stderr or "DISPATCH_SECRET_KEY" in refused.stderr
    assert "docs/deploy.md" in refused.stderr
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in CREDENTIALS.items()))
    done = config()
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    env = rendered["services"]["server-1"]["environment"]
    assert env["DISPATCH_SECRET_KEY"] == CREDENTIALS["DISPATCH_SECRET_KEY"]
    assert f":{CREDENTIALS['POSTGRES_PASSWORD']}@postgres:" in env["DISPATCH_DATABASE_URL"]
    postgres = rendered["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == CREDENTIALS["POSTGRES_PASSWORD"]


def test_the_notifiers_compose_passes_empty_are_off(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = servers_settings(compose, monkeypatch)
    assert configured_channels(settings) == []
    assert settings.secret_key == CREDENTIALS["DISPATCH_SECRET_KEY"]


def test_the_map_tiles_compose_passes_are_the_plain_map_unless_set(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A control room behind compose could not have had an online map: the tile settings never
    reached the servers."""
    plain = servers_settings(compose, monkeypatch)
    assert (plain.tile_url, plain.tile_crs, plain.tile_subdomains) == (None, "wgs84", "abc")
    assert (plain.tile_attribution, plain.tile_max_zoom) == ("", 18)
    amap = "https://webrd0{s}.is.autonavi.com/appmaptile?x={x}&y={y}&z={z}&style=8"
    settings = servers_settings(
        compose,
        monkeypatch,
        DISPATCH_TILE_URL=amap,
        DISPATCH_TILE_CRS="gcj02",
        DISPATCH_TILE_SUBDOMAINS="1234",
        DISPATCH_TILE_ATTRIBUTION="© 高德地图",
        DISPATCH_TILE_MAX_ZOOM="17",
    )
    assert (settings.tile_url, settings.tile_crs, settings.tile_subdomains) == (
        amap,
        "gcj02",
        "1234",
    )
    assert (settings.tile_attribution, settings.tile_max_zoom) == ("© 高德地图", 17)


def test_a_dingtalk_robot_without_its_secret_posts_unsigned(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    robot = "https://oapi.dingtalk.com/robot/send?access_token=t"
    settings = servers_settings(compose, monkeypatch, DISPATCH_DINGTALK_ROBOT_URL=robot)
    assert configured_channels(settings) == [DingTalkChannel(robot, None)]


def test_a_webhook_url_without_its_secret_stops_the_servers_starting(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compose turns the unset secret into "": a webhook signed with an empty key is forgeable."""
    with pytest.raises(ValidationError, match="required with DISPATCH_WEBHOOK_URL"):
        servers_settings(compose, monkeypatch, DISPATCH_WEBHOOK_URL="http://receiver/hook")


def test_nginx_waits_for_healthy_servers_and_uses_the_committed_config(
    compose: dict[str, Any],
) -> None:
    proxy = compose["services"]["nginx"]
    assert proxy["depends_on"] == {name: {"condition": "service_healthy"} for name in SERVERS}
    [mount] = proxy["volumes"]
    source, target, mode = mount.split(":")
    assert (ROOT / source).is_file()
    assert target == "/etc/nginx/conf.d/default.conf"
    assert mode == "ro"
    assert any(p.endswith(":80") for p in proxy["ports"])


def test_nginx_balances_over_every_server_and_upgrades_websockets(
    compose: dict[str, Any], nginx: str
) -> None:
    upstream = re.search(r"upstream dispatch \{(.*?)\}", nginx, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server (\S+):(\d+)", upstream.group(1), re.M)
    assert servers == [(name, "8000") for name in SERVERS]
    assert sorted(n for n in compose["services"] if n.startswith("server-")) == list(SERVERS)

    ws = location(nginx, "= /ws")
    assert "proxy_pass http://dispatch;" in ws
    assert "proxy_http_version 1.1;" in ws
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_buffering off;" in ws
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", ws)
    assert read_timeout is not None
    settings = Settings()
    # The server pings an idle socket and waits for the pong: the proxy must outlast both.
    assert int(read_timeout.group(1)) > settings.ws_ping_interval_s + settings.ws_ping_timeout_s
    assert re.search(r"map \$http_upgrade \$connection_upgrade", nginx)

    rest = location(nginx, "/")
    assert "proxy_pass http://dispatch;" in rest
    assert "X-Forwarded-For" in rest and "X-Forwarded-Proto" in rest
    assert "non_idempotent" not in nginx, "a POST (an incident report) is never sent twice"
    assert "return 404;" in location(nginx, "= /metrics")
    body_limit = re.search(r"client_max_body_size (\d+)m;", nginx)
    assert body_limit is not None
    assert int(body_limit.group(1)) * 1024 * 1024 >= settings.max_upload_bytes


def test_the_access_log_format_has_no_client_address(nginx: str) -> None:
    log_format = re.search(r"log_format dispatch (.*?);", nginx, re.S)
    assert log_format is not None
    assert "$remote_addr" not in log_format.group(1)
    assert "$request_uri" not in log_format.group(1), "query strings stay out of the log"
    assert "access_log /dev/stdout dispatch;" in nginx


async def test_the_server_health_check_command_passes_on_a_ready_server(
    compose: dict[str, Any], server: RunningServer
) -> None:
    test = compose["services"]["server-1"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3].replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")

    async def check() -> int:
        # The server runs in this event loop: the check must not block it.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stderr=asyncio.subprocess.DEVNULL
        )
        return await asyncio.wait_for(process.wait(), 10)

    assert await check() == 0
    await server.stop()
    assert await check() != 0


def forwarded_for(nginx: str, where: str, client_sent: str | None, remote_addr: str) -> str:
    """The X-Forwarded-For that nginx's ``location {where}`` passes upstream for a client at
    ``remote_addr`` that sent ``client_sent`` itself."""
    value = re.search(r"proxy_set_header\s+X-Forwarded-For\s+(\S+);", location(nginx, where))
    assert value is not None, f"location {where} sets no X-Forwarded-For"
    if value.group(1) == "$proxy_add_x_forwarded_for":
        return f"{client_sent}, {remote_addr}" if client_sent else remote_addr
    assert value.group(1) == "$remote_addr", value.group(1)
    return remote_addr


def test_nginx_hands_the_servers_the_address_it_saw_never_one_a_client_wrote(nginx: str) -> None:
    for where in ("/", "= /ws"):
        assert forwarded_for(nginx, where, "10.0.0.1", "203.0.113.7") == "203.0.113.7"


def test_the_servers_trust_forwarded_headers_from_the_compose_network_only(
    compose: dict[str, Any],
) -> None:
    """Not "*": a server port reached some other way (a port published by mistake, another
    container) must not choose the address the audit trail and the login backoff see."""
    trusted = compose["services"]["server-1"]["environment"]["FORWARDED_ALLOW_IPS"]
    [subnet] = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    assert trusted == subnet
    assert ipaddress.ip_network(subnet).is_private
    for name, service in compose["services"].items():
        assert "networks" not in service, f"{name} is on the default network with the others"
        assert name == "nginx" or "ports" not in service, f"{name} publishes a port"


@pytest.fixture
async def behind_nginx(
    settings: Settings, clock: ManualClock, compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    """A server that trusts forwarded headers from what the compose file's servers trust, and
    from the test client, which plays nginx at 127.0.0.1."""
    trusted = compose["services"]["server-1"]["environment"]["FORWARDED_ALLOW_IPS"]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", trusted if trusted == "*" else f"{trusted},127.0.0.1")
    async with world_serving(settings, clock) as world:
        yield world


async def test_a_client_that_forges_x_forwarded_for_stays_under_its_own_address(
    behind_nginx: World, nginx: str
) -> None:
    """Password spraying from one internet address, each guess with an X-Forwarded-For of the
    attacker's choosing: through nginx, every guess counts under the attacker's real address,
    so the per-address backoff (docs/security.md, "Login backoff") starts as it says, and the
    audit trail names that address."""
    world = behind_nginx
    attacker = "203.0.113.7"
    free = world.runtime.settings.login_address_free_failures
    codes = []
    for n in range(free + 3):
        forged = f"10.{n // 250}.{n % 250}.1"
        reply = await world.http.post(
            "/api/v1/auth/token",
            data={"username": f"sprayed-{n}", "password": "Passw0rd!"},
            headers={"X-Forwarded-For": forwarded_for(nginx, "/", forged, attacker)},
        )
        codes.append(reply.status_code)
    assert codes == [401] * (free + 1) + [429] * 2
    admin = await world.admin()
    trail = await world.http.get(
        "/api/v1/audit", params={"action": "login_failed"}, headers=admin.headers
    )
    assert {e["address"] for e in trail.json()["items"]} == {attacker}


def proxied(nginx: str, where: str, header: str, host: str, scheme: str) -> str:
    """The ``header`` (Host or X-Forwarded-Proto) that nginx's ``location {where}`` passes
    upstream for a request that named ``host`` (with its port) over ``scheme``."""
    value = re.search(
        r"proxy_set_header\s+" + re.escape(header) + r"\s+(\S+);", location(nginx, where)
    )
    assert value is not None, f"location {where} sets no {header}"
    variables = {"$http_host": host, "$host": host.rsplit(":", 1)[0].lower(), "$scheme": scheme}
    assert value.group(1) in variables, value.group(1)
    return variables[value.group(1)]


@pytest.mark.parametrize(
    ("host", "scheme"), [("localhost:8080", "http"), ("dispatch.example:8443", "https")]
)
async def test_a_redirect_through_nginx_keeps_the_host_port_and_scheme_the_browser_used(
    behind_nginx: World, nginx: str, host: str, scheme: str
) -> None:
    """/console/ redirects to /console: with the Host nginx sent as $host, a browser at
    localhost:8080 was sent to localhost (port 80, nothing there)."""
    for where in ("/", "= /ws"):
        assert proxied(nginx, where, "Host", host, scheme) == host
    reply = await behind_nginx.http.get(
        "/console/",
        headers={
            "Host": proxied(nginx, "/", "Host", host, scheme),
            "X-Forwarded-Proto": proxied(nginx, "/", "X-Forwarded-Proto", host, scheme),
        },
    )
    assert reply.status_code == 307
    assert reply.headers["location"] == f"{scheme}://{host}/console"


def test_the_comments_on_the_websocket_timeouts_say_the_servers_settings(nginx: str) -> None:
    settings = Settings()
    ws = location(nginx, "= /ws")
    said = re.search(r"(\d+) s of silence before it pings.*?(\d+) s pong timeout", ws, re.S)
    assert said is not None, "the comment on proxy_read_timeout names the ping and pong times"
    assert (float(said.group(1)), float(said.group(2))) == (
        settings.ws_ping_interval_s,
        settings.ws_ping_timeout_s,
    )


# Open source nginx resolves an upstream server's name again (`resolve`) from this release on.
NGINX_RESOLVE = (1, 27, 3)


def test_nginx_finds_servers_recreated_with_new_addresses_without_a_restart(
    compose: dict[str, Any], nginx: str
) -> None:
    """Names resolved once at start: after `docker compose up -d --build` recreated the
    servers, nginx sent to their old addresses and answered 502 until it was restarted."""
    upstream = re.search(r"upstream dispatch \{(.*?)\}", nginx, re.S)
    assert upstream is not None
    assert re.search(r"^\s*zone dispatch \d+[km];", upstream.group(1), re.M), "resolve needs it"
    servers = re.findall(r"^\s*server (\S+) (.*);", upstream.group(1), re.M)
    assert len(servers) == len(SERVERS)
    for address, parameters in servers:
        assert "resolve" in parameters.split(), address
    resolver = re.search(r"^\s*resolver 127\.0\.0\.11 valid=(\d+)s", nginx, re.M)
    assert resolver is not None, "Docker's embedded DNS, looked up again within seconds"
    assert int(resolver.group(1)) <= 30
    image = compose["services"]["nginx"]["image"]
    tag = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?-alpine", image)
    assert tag is not None, image
    # A tag without its patch number may be any of that line's images, the first included.
    version = (int(tag.group(1)), int(tag.group(2)), int(tag.group(3) or 0))
    assert version >= NGINX_RESOLVE, image


def installed_nginx() -> tuple[str, tuple[int, ...]]:
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )
    if binary is None:
        pytest.skip("no nginx here")
    said = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", said)
    assert found is not None, said
    return binary, tuple(int(part) for part in found.groups())


async def test_nginx_takes_the_config_and_proxies_to_the_servers(
    behind_nginx: World, nginx: str, tmp_path: Path
) -> None:
    """The committed config under the nginx installed here, its servers mapped to a running
    one (the compose names do not resolve here; an nginx older than 1.27.3 is run without
    `resolve`, which it does not know): `nginx -t` passes, and a browser's request through it
    is served and redirected to the port it used. With gzip turned on for the whole of nginx
    (as a host's nginx.conf may), a large answer the server gzipped comes through gzipped once,
    and a small one the server left plain stays plain."""
    binary, version = installed_nginx()
    server_port = behind_nginx.http.base_url.port
    listen = free_port()
    site = re.sub(r"server-\d:8000", f"127.0.0.1:{server_port}", nginx)
    site = site.replace("listen 80 default_server;", f"listen 127.0.0.1:{listen} default_server;")
    if version < NGINX_RESOLVE:
        site = re.sub(r" resolve;", ";", site)
    (tmp_path / "site.conf").write_text(site)
    for folder in ("logs", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / folder).mkdir()
    temp = " ".join(
        f"{kind}_temp_path {tmp_path / folder};"
        for kind, folder in [
            ("client_body", "body"),
            ("proxy", "proxy"),
            ("fastcgi", "fastcgi"),
            ("uwsgi", "uwsgi"),
            ("scgi", "scgi"),
        ]
    )
    (tmp_path / "nginx.conf").write_text(
        f"worker_processes 1; pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'error.log'};\n"
        "events { worker_connections 64; }\n"
        f"http {{ {temp} gzip on; gzip_min_length 1; gzip_types application/json;\n"
        f"include {tmp_path / 'site.conf'}; }}\n"
    )
    command = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    proxy = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        host = f"localhost:{listen}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}") as client:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                assert proxy.poll() is None
                await asyncio.sleep(0.05)
            reply = await client.get("/console/", headers={"Host": host})
            accepts = {"Host": host, "Accept-Encoding": "gzip"}
            async with client.stream("GET", "/openapi.json", headers=accepts) as large:
                wire = b"".join([chunk async for chunk in large.aiter_raw()])
            async with client.stream("GET", "/readyz", headers=accepts) as small:
                plain = b"".join([chunk async for chunk in small.aiter_raw()])
        assert reply.status_code == 307
        assert reply.headers["location"] == f"http://{host}/console"
        assert large.headers["content-encoding"] == "gzip"
        assert json.loads(gzip.decompress(wire))["openapi"]
        assert "content-encoding" not in small.headers
        assert json.loads(plain)["status"] == "ready"
    finally:
        proxy.terminate()
        proxy.wait(10)


def test_the_servers_stop_grace_outlasts_their_shutdown(compose: dict[str, Any]) -> None:
    """Requests are cut after DISPATCH_SHUTDOWN_REQUESTS_S, then the acknowledgements are
    flushed for up to DISPATCH_SHUTDOWN_ACK_FLUSH_S (and one attempt's 2 s): Docker's SIGKILL
    must come after both."""
    settings = Settings()
    shutdown = settings.shutdown_requests_s + settings.shutdown_ack_flush_s + 2
    for name in SERVERS:
        grace = re.fullmatch(r"(\d+)s", compose["services"][name]["stop_grace_period"])
        assert grace is not None
        assert int(grace.group(1)) >= shutdown + 5, name
