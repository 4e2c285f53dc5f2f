"""The Dockerfile: a multi-stage build into a slim image run by an unprivileged user."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    parts: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            parts.append([])
        parts[-1].append((word, rest))
    return parts


def test_three_stages_end_in_a_slim_python_image() -> None:
    pages, build, runtime = stages()
    assert pages[0][1].startswith("node:") and pages[0][1].endswith(" AS pages")
    assert build[0][1] == "python:3.11-slim-bookworm AS build"
    assert runtime[0][1] == "python:3.11-slim-bookworm"
    copied = [rest for word, rest in runtime if word == "COPY"]
    assert copied == ["--from=build /opt/dispatch /opt/dispatch"], "only the virtualenv"


def test_the_image_runs_as_an_unprivileged_user_with_a_health_check() -> None:
    runtime = stages()[-1]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users == ["dispatch"]
    [health] = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert "/readyz" in health
    [command] = [rest for word, rest in runtime if word == "CMD"]
    assert json.loads(command) == ["dispatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "DISPATCH_SECRET_FILE=/var/lib/dispatch/secret.key" in env
    assert "DISPATCH_DATABASE_URL=sqlite+aiosqlite:////var/lib/dispatch/dispatch.db" in env


def test_the_pages_are_built_by_the_web_build_script_into_the_package() -> None:
    pages, build, _ = stages()
    package = json.loads((ROOT / "web" / "package.json").read_text())
    runs = [rest for word, rest in pages if word == "RUN"]
    assert "npm ci --no-audit --no-fund" in runs
    assert "npm run build" in runs and "build" in package["scripts"]
    script = (ROOT / "web" / package["scripts"]["build"].split()[-1]).read_text()
    assert "join(here, '..', 'dispatch', 'static')" in script
    assert ("COPY", "--from=pages /src/dispatch/static/ dispatch/static/") in build


def test_every_package_and_file_the_install_needs_is_copied_and_not_ignored() -> None:
    _, build, _ = stages()
    sources = {
        part.rstrip("/")
        for word, rest in build
        if word == "COPY" and not rest.startswith("--from")
        for part in rest.split()[:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= sources
    assert {"pyproject.toml", "README.md"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), source
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("**")] == "**", "everything is excluded unless listed"
    for source in sources:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source
    assert "web/node_modules/" in ignore and "dispatch/static/" in ignore
    assert any(re.fullmatch(r"!web/?", line) for line in ignore)
