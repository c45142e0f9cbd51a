"""``--engines`` sources (``dataengine/discovery.py``): parsing, the engines
file (comments, malformed lines with their numbers), DNS through the real
``getaddrinfo``, and a watch that keeps the last good set when its source
resolves to nothing or to garbage."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest

from dataengine.client import parse_endpoints
from dataengine.discovery import (
    DiscoveryError,
    DiscoveryStats,
    SourceWatch,
    parse_engines_file,
    parse_source,
    resolve,
)
from dataengine.errors import ConfigError


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically, as the deploy scripts do."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def test_a_list_a_dns_name_and_a_file_parse() -> None:
    assert parse_source("h1:1, h2:2,h1:1").endpoints == ("h1:1", "h2:2")
    assert parse_source(["[::1]:50051"]).endpoints == ("[::1]:50051",)
    dns = parse_source("dns:///engine-headless.ns.svc.cluster.local:50051")
    assert (dns.kind, dns.host, dns.port) == ("dns", "engine-headless.ns.svc.cluster.local", 50051)
    file = parse_source("file:///shared/job/engines.txt")
    assert (file.kind, file.path) == ("file", Path("/shared/job/engines.txt"))
    assert dns.dynamic and file.dynamic and not parse_source("h:1").dynamic
    assert parse_endpoints("file:///x/engines") == ("file:///x/engines",)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "at least one"),
        ("h1", "not HOST:PORT"),
        ("h1:0", "not HOST:PORT"),
        ("h1:99999", "not HOST:PORT"),
        ("::1:5", "not HOST:PORT"),
        ("[nothex]:5", "not HOST:PORT"),
        ("dns:///name", "dns:///NAME:PORT"),
        ("dns:///:50051", "dns:///NAME:PORT"),
        ("file:///", "file:///PATH"),
        ("http://h:1", "only dns"),
        ("h1:1,dns:///n:1", "the only source"),
    ],
)
def test_a_malformed_source_names_the_field(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        parse_source(text)
    assert caught.value.field == "client.endpoints"


def test_an_engines_file_skips_comments_and_reports_malformed_lines_by_number() -> None:
    text = (
        "# engines of job 42\n10.0.0.1:50051\n\n  10.0.0.2:50051  # node b\n"
        "not an engine\n[::1]:7\nh:port\n10.0.0.1:50051\n"
    )
    got = parse_engines_file(text)
    assert got.endpoints == ("10.0.0.1:50051", "10.0.0.2:50051", "[::1]:7")
    assert [(n, line) for n, line, _ in got.skipped] == [(5, "not an engine"), (7, "h:port")]


def test_dns_gives_every_address_of_the_name_with_the_port() -> None:
    expected = set()
    for family, _, _, _, addr in socket.getaddrinfo("localhost", 4321, type=socket.SOCK_STREAM):
        host = str(addr[0]).split("%")[0]
        expected.add(f"[{host}]:4321" if family == socket.AF_INET6 else f"{host}:4321")
    got = resolve(parse_source("dns:///localhost:4321"))
    assert set(got.endpoints) == expected
    assert "127.0.0.1:4321" in got.endpoints


def test_a_name_that_does_not_resolve_and_an_empty_file_are_discovery_errors(
    tmp_path: Path,
) -> None:
    with pytest.raises(DiscoveryError, match=r"no-such-engine\.invalid"):
        resolve(parse_source("dns:///no-such-engine.invalid:50051"))
    with pytest.raises(DiscoveryError, match="No such file"):
        resolve(parse_source(f"file://{tmp_path}/missing"))
    (tmp_path / "engines").write_text("# none yet\n\n", encoding="utf-8")
    with pytest.raises(DiscoveryError, match="names no engine"):
        resolve(parse_source(f"file://{tmp_path}/engines"))
    (tmp_path / "engines").write_text("garbage\n", encoding="utf-8")
    with pytest.raises(DiscoveryError, match="1 malformed lines"):
        resolve(parse_source(f"file://{tmp_path}/engines"))


def test_a_watch_applies_changes_and_keeps_the_last_good_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "engines"
    _write(path, "a:1\n")
    applied: list[tuple[str, ...]] = []
    stats = DiscoveryStats(source=f"file://{path}")
    watch = SourceWatch(parse_source(f"file://{path}"), 0.05, applied.append, stats)
    watch.poll()
    _write(path, "a:1\nb:2\nc:3\n")
    watch.poll()
    watch.poll()  # unchanged: nothing applied
    assert applied == [("a:1",), ("a:1", "b:2", "c:3")]
    assert (stats.engines, stats.failures, stats.last_error) == (3, 0, "")

    with caplog.at_level(logging.WARNING, logger="dataengine.discovery"):
        _write(path, "a:1\nb:2\n???\n")  # c leaves; a garbage line is skipped
        watch.poll()
        watch.poll()  # the same bad line is reported once
    assert applied[-1] == ("a:1", "b:2")
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == [f"file://{path} line 3 skipped (not HOST:PORT): '???'"]

    _write(path, "")  # resolves to nothing
    watch.poll()
    path.unlink()  # resolves to an error
    watch.poll()
    assert applied[-1] == ("a:1", "b:2") and watch.current == ("a:1", "b:2")
    assert stats.failures == 2 and "No such file" in stats.last_error
    assert stats.engines == 2  # the last good resolution

    _write(path, "b:2\n")
    watch.start()
    try:
        deadline = 200
        while applied[-1] != ("b:2",) and deadline:
            time.sleep(0.05)
            deadline -= 1
    finally:
        watch.stop(5)
    assert applied[-1] == ("b:2",)
