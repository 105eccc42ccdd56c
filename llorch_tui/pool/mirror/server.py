"""The Hub's HTTP protocol, read-only, for the models of one pool (aiohttp).

Implemented: what huggingface_hub calls to download —
  GET  /api/models/{repo}[/revision/{rev}]          model_info / repo_info (siblings; ?blobs=1 adds sizes/hashes)
  GET  /api/models/{repo}/tree/{rev}[/{path}]       list_repo_tree (snapshot_download)
  HEAD /{repo}/resolve/{rev}/{file}                 get_hf_file_metadata (X-Repo-Commit, ETag, X-Linked-*)
  GET  /{repo}/resolve/{rev}/{file}                 the bytes; Range -> 206
Errors as the Hub sends them: 404 + X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound,
401/403 + GatedRepo for a repo named with --gated. GET /api/llorch/stats counts bytes served.

Authentication means what it says: a token alone protects every route (401 without it, 403 with
another); with --gated the token opens exactly the gated repos' files, the Hub's way, and the
rest is public; --gated without a token is refused (any bearer would do). Names and revisions
taken from the URL are echoed into headers only made header-safe, and every malformed Range is
a 416, never a 500.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from llorch_worker.httpguard import ConnectionLimits, bearer_token, token_matches

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.hub_fetch import MIRROR_TOKEN_ENV
from llorch_tui.pool.mirror.index import MirrorFile, MirrorIndex, MirrorRepo

CHUNK = 256 * 1024
# 19 digits reach past any file size; longer numbers are refused before int() (a 5000-digit
# number used to hit Python's 4300-digit conversion limit: a 500)
RANGE_RE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


@dataclass
class MirrorOptions:
    gated: set[str] = field(default_factory=set)
    # alone: every route needs exactly this bearer token; with `gated`: the gated repos' files do
    token: str | None = None
    rate_limit_bps: float | None = None  # per response; keeps a LAN (or a test) from being saturated
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        if self.gated and not self.token:
            raise LlorchError(ErrorCode.BAD_REQUEST,
                              "--gated needs a token: without one any bearer token would open the gated repos",
                              f"set {MIRROR_TOKEN_ENV} (or --token-file FILE) to the token clients must send")

    @property
    def protects_everything(self) -> bool:
        return self.token is not None and not self.gated


@dataclass
class Stats:
    bytes_served: int = 0
    requests: int = 0
    by_file: dict[str, int] = field(default_factory=dict)


def header_safe(text: str, limit: int = 300) -> str:
    """Text that may go into a header: printable ASCII, the rest escaped (a `%00` or a newline in
    a requested name must not end the header or fail the response)."""
    out = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)
    return out[:limit]


def _err(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status,
                             headers={"X-Error-Code": code, "X-Error-Message": header_safe(message)})


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts or 0))


class MirrorApp:
    def __init__(self, index: MirrorIndex, options: MirrorOptions) -> None:
        self.index, self.options, self.stats = index, options, Stats()
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get("/api/llorch/stats", self.get_stats)
        self.app.router.add_get("/api/models/{tail:.+}", self.api_models)
        self.app.router.add_get("/{tail:.+}/resolve/{rest:.+}", self.resolve)  # and HEAD
        self.app.router.add_get("/", self.root)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.options.protects_everything:
            refused = self._check_token(request, "this mirror")
            if refused is not None:
                return refused
        return await handler(request)

    def _check_token(self, request: web.Request, what: str) -> web.Response | None:
        assert self.options.token is not None
        given = bearer_token(request.headers.get("Authorization"))
        if not given:
            return _err(401, "GatedRepo", f"Access to {what} is restricted: send Authorization: Bearer <token>. "
                        "You must be authenticated to access it.")
        if not token_matches(given, self.options.token):
            return _err(403, "GatedRepo", f"Access to {what} is restricted and this token is not the mirror's token.")
        return None

    async def _repos(self) -> dict[str, MirrorRepo]:
        return await asyncio.to_thread(self.index.repos)  # may hash a new model's files: off the loop

    async def root(self, request: web.Request) -> web.Response:
        repos = await self._repos()
        return web.json_response({"llorch_mirror": True, "pool_id": self.index.pool_id, "repos": sorted(repos)})

    async def get_stats(self, request: web.Request) -> web.Response:
        s = self.stats
        return web.json_response({"bytes_served": s.bytes_served, "requests": s.requests, "by_file": s.by_file})

    def _split(self, repos: dict[str, MirrorRepo], parts: list[str]) -> tuple[MirrorRepo | None, list[str]]:
        for k in (2, 1):
            if len(parts) >= k and "/".join(parts[:k]) in repos:
                return repos["/".join(parts[:k])], parts[k:]
        return None, parts

    def _repo_not_found(self, name: str) -> web.Response:
        return _err(404, "RepoNotFound", f"Repository not found: {name} is not downloaded on this mirror's pool")

    async def api_models(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        parts = [p for p in request.match_info["tail"].split("/") if p]
        repo, rest = self._split(await self._repos(), parts)
        if repo is None:
            return self._repo_not_found("/".join(parts[:2]))
        blobs = request.query.get("blobs", "").lower() in ("1", "true")
        if not rest:
            return web.json_response(self._info(repo, blobs))
        if rest[0] == "revision" and len(rest) == 2:
            if not repo.has_revision(rest[1]):
                return _err(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
            return web.json_response(self._info(repo, blobs))
        if rest[0] == "tree" and len(rest) >= 2:
            if not repo.has_revision(rest[1]):
                return _err(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
            recursive = request.query.get("recursive", "").lower() in ("1", "true")
            return self._tree(repo, "/".join(rest[2:]), recursive)
        return _err(404, "EntryNotFound", "no such API route on a llorch mirror")

    def _info(self, repo: MirrorRepo, blobs: bool) -> dict[str, Any]:
        siblings: list[dict[str, Any]] = []
        for f in sorted(repo.files.values(), key=lambda f: f.name):
            s: dict[str, Any] = {"rfilename": f.name}
            if blobs:
                s.update(size=f.size, blobId=f.blob_id)
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
            siblings.append(s)
        gated = repo.repo in self.options.gated
        return {
            "_id": repo.commit[:24], "id": repo.repo, "modelId": repo.repo, "author": repo.repo.split("/")[0],
            "sha": repo.commit, "lastModified": _iso(repo.last_modified), "createdAt": _iso(repo.last_modified),
            "private": False, "disabled": False, "gated": "manual" if gated else False, "downloads": 0, "likes": 0,
            "library_name": "transformers", "tags": ["safetensors", "llorch-mirror"],
            "pipeline_tag": "text-generation", "siblings": siblings,
            "usedStorage": sum(f.size for f in repo.files.values()),
        }

    def _tree(self, repo: MirrorRepo, path: str, recursive: bool) -> web.Response:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(n.startswith(prefix) for n in repo.files):
            return _err(404, "EntryNotFound", f"{path} does not exist on {repo.commit}")
        out: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for name in sorted(repo.files):
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix):]
            if "/" in rel and not recursive:
                dirs.add(prefix + rel.split("/")[0])
                continue
            f = repo.files[name]
            item: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": name}
            if f.lfs:
                item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
            out.append(item)
        out += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(dirs)]
        return web.json_response(out)

    def _gate(self, request: web.Request, repo: MirrorRepo) -> web.Response | None:
        if repo.repo not in self.options.gated:
            return None
        return self._check_token(request, f"model {repo.repo}")

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        repos = await self._repos()
        name = request.match_info["tail"].strip("/")
        repo = repos.get(name)
        if repo is None:
            return self._repo_not_found(name)
        gate = self._gate(request, repo)
        if gate is not None:
            return gate
        rev, _, filename = request.match_info["rest"].partition("/")
        if not repo.has_revision(rev):
            return _err(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        f = repo.files.get(filename)
        if f is None:
            return _err(404, "EntryNotFound", f"{filename} does not exist on {repo.commit}")
        return await self._send(request, repo, f)

    def _headers(self, repo: MirrorRepo, f: MirrorFile) -> dict[str, str]:
        h = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
             "Last-Modified": email.utils.formatdate(repo.last_modified, usegmt=True),
             "Content-Disposition": f'inline; filename="{header_safe(f.name.rsplit("/", 1)[-1]).replace(chr(34), "")}"'}
        if f.lfs:
            h.update({"ETag": f'"{f.blob_id}"', "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        else:
            h["ETag"] = f'"{f.git_sha1}"'
        return h

    async def _send(self, request: web.Request, repo: MirrorRepo, f: MirrorFile) -> web.StreamResponse:
        headers = self._headers(repo, f)
        start, end = 0, f.size - 1
        status = 200
        rng = request.headers.get("Range")
        if rng:
            m = RANGE_RE.match(rng.strip())
            if m is None or (not m.group(1) and not m.group(2)):
                return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{f.size}"})
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), f.size - 1) if m.group(2) else f.size - 1
            else:  # suffix range: the last N bytes
                start = max(f.size - int(m.group(2)), 0)
            if start >= f.size or start > end:
                return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{f.size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start + 1
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        await self._stream(resp, repo, f, start, end)
        return resp

    async def _stream(self, resp: web.StreamResponse, repo: MirrorRepo, f: MirrorFile, start: int, end: int) -> None:
        key = f"{repo.repo}/{f.name}"
        rate = self.options.rate_limit_bps
        began, sent = time.monotonic(), 0
        with f.path.open("rb") as fh:
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = fh.read(min(CHUNK if not rate else max(int(rate / 20), 1024), remaining))
                if not chunk:
                    break
                try:
                    await resp.write(chunk)
                except (ConnectionResetError, ConnectionError):
                    return  # the client went away (killed, cancelled): nothing to clean up
                remaining -= len(chunk)
                sent += len(chunk)
                self.stats.bytes_served += len(chunk)
                self.stats.by_file[key] = self.stats.by_file.get(key, 0) + len(chunk)
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await resp.write_eof()
