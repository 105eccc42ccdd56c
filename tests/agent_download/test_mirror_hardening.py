"""The mirror's authentication means what it says, the Hub token never leaves for another host,
and hostile requests get a 4xx (never a 500), within connection limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from aiohttp import web
from dl_helpers import MirrorProc, Pool, clean_env, register
from stall_proxy import StallProxy

MIRROR_TOKEN = "mirror-secret-token"
HUB_TOKEN = "hf_the_users_real_hub_token"
FILE = "/llorch-test/tiny-llama/resolve/main/config.json"


class CaptureProxy(StallProxy):
    """Forwards everything to the mirror and records every request's headers (a plain-http
    endpoint that is not the Hub: what it sees, any LAN host could see)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, stall_file="\x00never", stall_after=0)
        self.seen: list[dict[str, str]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(dict(request.headers))
        return await super()._handle(request)


@pytest.fixture(scope="module")
def locked(source_pool: Pool) -> Any:
    """A mirror with a token and no --gated: every route needs the token."""
    m = MirrorProc(source_pool, env={"LLORCH_MIRROR_TOKEN": MIRROR_TOKEN})
    try:
        yield m
    finally:
        m.stop()


def test_a_token_alone_protects_every_route(locked: MirrorProc) -> None:
    routes = ["/", "/api/llorch/stats", "/api/models/llorch-test/tiny-llama", FILE,
              "/api/models/llorch-test/tiny-llama/tree/main"]
    for route in routes:
        assert httpx.get(locked.url + route).status_code == 401, route
        assert httpx.get(locked.url + route, headers={"Authorization": "Bearer wrong"}).status_code == 403, route
        for scheme in ("Bearer", "bearer", "BEARER"):  # the scheme is case-insensitive
            r = httpx.get(locked.url + route, headers={"Authorization": f"{scheme} {MIRROR_TOKEN}"})
            assert r.status_code == 200, (route, scheme, r.text)
    refused = httpx.get(locked.url + FILE)
    assert refused.headers["X-Error-Code"] == "GatedRepo" and "token" in refused.text


def test_hub_token_never_reaches_a_mirror(locked: MirrorProc, tmp_path: Path, hf_home: Path) -> None:
    dest = Pool(tmp_path / "dest", "dest", clean_env(hf_home, HF_TOKEN=HUB_TOKEN))
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    with CaptureProxy(locked.url) as proxy:
        code, _, err = dest.json("models", "download", "tl", "--endpoint", proxy.url)
        assert code != 0 and err["error"]["code"] == "gated", err
        assert "LLORCH_MIRROR_TOKEN" in err["error"]["hint"]
        # the token from a file (its path is no secret; LLORCH_MIRROR_TOKEN works the same way)
        token_file = tmp_path / "mirror.token"
        token_file.write_text(MIRROR_TOKEN + "\n")
        code, _, done = dest.json("models", "download", "tl", "--endpoint", proxy.url,
                                  env={"LLORCH_MIRROR_TOKEN_FILE": str(token_file)})
        assert code == 0, done
    assert dest.entry("tl")["downloaded"] is True
    assert len(proxy.seen) >= 4  # model info, and the files
    assert not any(HUB_TOKEN in json.dumps(h) for h in proxy.seen)
    with_auth = [h for h in proxy.seen if "Authorization" in h]
    assert with_auth and all(h["Authorization"] == f"Bearer {MIRROR_TOKEN}" for h in with_auth)


@pytest.mark.parametrize("args,env,words", [
    (("--gated", "llorch-test/tiny-llama"), {}, "--gated needs a token"),
    (("--token", "visible-in-ps"), {}, "visible to every user"),
])
def test_unsafe_mirror_options_are_refused(source_pool: Pool, args: tuple[str, ...], env: dict[str, str],
                                           words: str) -> None:
    proc = source_pool.run("mirror", "serve", "--port", "0", *args, env=env, timeout=60)
    assert proc.returncode != 0 and words in proc.stderr, proc.stderr


@pytest.mark.parametrize("path,headers,status", [
    (FILE, {"Range": "bytes=" + "9" * 5000 + "-"}, 416),
    (FILE, {"Range": "bytes=0-" + "9" * 5000}, 416),
    ("/llorch-test/tiny-llama/resolve/main/config.json%00.txt", {}, 404),
    ("/llorch-test/tiny-llama/resolve/ma%00in/config.json", {}, 404),
    ("/llorch-test/tiny-llama/resolve/main/conf%0d%0aX-Injected:%201", {}, 404),
    ("/api/models/llorch-test/tiny-llama/revision/v%00%0a1", {}, 404),
])
def test_hostile_requests_are_4xx(mirror: MirrorProc, path: str, headers: dict[str, str], status: int) -> None:
    r = httpx.get(httpx.URL(mirror.url + path), headers=headers)
    assert r.status_code == status, (path, r.status_code, r.text)
    assert "X-Injected" not in r.headers


def test_corrupt_catalog_while_serving_and_connection_limits(make_pool: Any, hf_home: Path) -> None:
    from netprobe import closed_by_server, half_request, raw_get

    state = make_pool(("llama",), pool_id="fragile")
    pool = Pool(state, "fragile", clean_env(hf_home))
    m = MirrorProc(pool, "--idle-timeout", "2", "--max-connections", "3", "--max-connections-per-client", "3")
    try:
        url = f"{m.url}/llorch/tiny-llama/resolve/main/config.json"
        good = httpx.get(url)
        assert good.status_code == 200
        pool.catalog.write_text("{ this is not json")  # damaged by hand while the mirror runs
        again = httpx.get(url)
        assert again.status_code == 200 and again.content == good.content
        assert httpx.get(m.url + "/").json()["repos"] == ["llorch/tiny-llama"]

        slow = [half_request(m.url) for _ in range(3)]
        status, refused = raw_get(m.url, "/")
        assert status == 503 and b"too_many_connections" in refused
        assert all(closed_by_server(s) for s in slow)  # the idle timeout closes them
        assert raw_get(m.url, "/")[0] == 200
    finally:
        m.stop()
