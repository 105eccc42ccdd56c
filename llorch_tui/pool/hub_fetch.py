"""Talking to the Hub (or a mirror) with the real huggingface_hub client: plan a download, fetch one file.

Metadata comes from `HfApi.model_info(files_metadata=True)`: every file's size, and its sha256
(LFS files) or git blob id (small files kept in git), all before the first byte is fetched.
Files are fetched with the client's own HTTP session and headers (token, user agent), as ranged
GETs: the client alone restarts an interrupted file from zero after a process dies, we continue
from the bytes in the `.part` file.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.hashing import FileHasher

log = logging.getLogger("llorch.pool.download")
HUB_ENDPOINT = "https://huggingface.co"
# Top-level files only: subfolders hold duplicates (original/, onnx/) a transformers checkpoint does not need.
FILE_PATTERNS = ("*.safetensors", "*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.*")
CONNECT_TIMEOUT_S = 15.0
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None  # published for LFS files
    git_sha1: str | None  # the blob id; what the Hub publishes for files kept in git


@dataclass(frozen=True)
class RepoPlan:
    repo: str
    endpoint: str
    commit: str
    files: list[RemoteFile]
    gated: bool

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class RetryPolicy:
    stall_s: float = 30.0  # no byte for this long = a stall
    max_attempts: int = 5  # consecutive attempts without progress before giving up
    backoff_s: float = 1.0  # first wait; doubles each attempt, capped at MAX_BACKOFF_S


def resolve_endpoint(param: str | None, agent_setting: str | None) -> str:
    """op param > agent setting (pool config hf_endpoint) > HF_ENDPOINT > the Hub. Read at call time, not import."""
    for value in (param, agent_setting, os.environ.get("HF_ENDPOINT")):
        if value and value.strip():
            return value.strip().rstrip("/")
    return HUB_ENDPOINT


def is_hub(endpoint: str) -> bool:
    return endpoint.rstrip("/") in (HUB_ENDPOINT, "https://hf.co")


def select_files(names: list[str]) -> list[str]:
    """Weights, configs and tokenizer files at the top of the repo.

    consolidated*.safetensors (Mistral's reference-format copy of the same weights) is skipped when
    transformers-format shards are there: it would double the download for nothing.
    """
    picked = [n for n in names if "/" not in n and any(fnmatch.fnmatch(n, p) for p in FILE_PATTERNS)]
    if any(n.startswith("model") and n.endswith(".safetensors") for n in picked):
        picked = [n for n in picked if not (n.startswith("consolidated") and n.endswith(".safetensors"))]
    return sorted(picked)


MIRROR_TOKEN_ENV = "LLORCH_MIRROR_TOKEN"


MIRROR_TOKEN_FILE_ENV = "LLORCH_MIRROR_TOKEN_FILE"


def mirror_token() -> str | None:
    """The shared secret of llorch mirrors: what `mirror serve` requires and what downloads from
    any endpoint other than the Hub send. From $LLORCH_MIRROR_TOKEN, else the file named by
    $LLORCH_MIRROR_TOKEN_FILE (a path is no secret: it may sit in a pool's `env` in the config,
    whose values are visible in `ps` on the pool)."""
    token = os.environ.get(MIRROR_TOKEN_ENV)
    if token:
        return token
    path = os.environ.get(MIRROR_TOKEN_FILE_ENV)
    return read_token_file(path) if path else None


def read_token_file(path: str) -> str:
    """The token in FILE (surrounding whitespace stripped); an unreadable or empty file is an error."""
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"cannot read the token file {path}: {exc}",
                          "give a readable file holding the token on one line") from None
    if not token:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"the token file {path} is empty", "write the token into it")
    return token


def endpoint_token(endpoint: str) -> str | bool | None:
    """The credential to send to `endpoint`, as huggingface_hub's `token=` takes it. The Hub gets
    the user's Hub token (None: HF_TOKEN or the stored login, as the client finds it). Any other
    endpoint (a LAN mirror, a proxy, plain http) gets $LLORCH_MIRROR_TOKEN or nothing (False),
    never the Hub token: a mirror must not learn the user's Hugging Face credentials."""
    if is_hub(endpoint):
        return None
    return mirror_token() or False


def have_token(endpoint: str) -> bool:
    if not is_hub(endpoint):
        return mirror_token() is not None
    from huggingface_hub import get_token

    return get_token() is not None


def gated_error(repo: str, endpoint: str) -> LlorchError:
    if not is_hub(endpoint):
        return LlorchError(
            ErrorCode.GATED, f"repository {repo} on {endpoint} needs a token",
            f"set {MIRROR_TOKEN_ENV} on this pool to the mirror's token (the Hugging Face token is only ever "
            "sent to the Hub)", repo=repo, endpoint=endpoint)
    return LlorchError(
        ErrorCode.GATED, f"repository {repo} on {endpoint} is gated: it needs an accepted licence and a token",
        "accept the terms on the model's page, then log in on this pool with `huggingface-cli login` "
        "(or `hf auth login`) or set HF_TOKEN", repo=repo, endpoint=endpoint)


def hub_error(exc: BaseException, repo: str, endpoint: str, file: str | None = None) -> LlorchError:
    """Turn a client exception into our error with the next step. Unknown exceptions become INTERNAL."""
    import httpx2
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    if isinstance(exc, LlorchError):
        return exc
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return LlorchError(ErrorCode.NETWORK, f"cannot download {repo}: HF_HUB_OFFLINE is set on this pool",
                           "unset HF_HUB_OFFLINE (or download on a pool that is online and copy it over with "
                           "`llorch-pool mirror serve`)", endpoint=endpoint)
    if isinstance(exc, GatedRepoError):
        return gated_error(repo, endpoint)
    if isinstance(exc, RevisionNotFoundError):
        return LlorchError(ErrorCode.NOT_FOUND, f"repository {repo} on {endpoint} has no such revision",
                           "check --revision (a branch, tag or commit sha), or leave it out for main",
                           repo=repo, endpoint=endpoint)
    if isinstance(exc, RemoteEntryNotFoundError):
        return LlorchError(ErrorCode.NOT_FOUND, f"{repo} on {endpoint} has no file {file}",
                           "the repository changed while downloading; run the download again", repo=repo)
    if isinstance(exc, RepositoryNotFoundError):
        return LlorchError(
            ErrorCode.REPO_NOT_FOUND, f"repository {repo} not found on {endpoint}",
            "check the repo id (`llorch-pool models update ID --repo OWNER/NAME`); a private repo needs HF_TOKEN; "
            "a mirror serves only the models downloaded on its pool", repo=repo, endpoint=endpoint)
    if isinstance(exc, (httpx2.TransportError, OSError)) and not isinstance(exc, HfHubHTTPError):
        return LlorchError(
            ErrorCode.NETWORK, f"cannot reach {endpoint}: {type(exc).__name__}: {exc}",
            "check this pool's network or proxy, or download from a mirror: --endpoint URL, hf_endpoint in the "
            "pool's config, or HF_ENDPOINT", endpoint=endpoint)
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return LlorchError(ErrorCode.NETWORK, f"{endpoint} answered HTTP {status} for {repo}: {str(exc).strip()[:300]}",
                           "retry later; if it persists, check the endpoint", endpoint=endpoint, status=status)
    return LlorchError(ErrorCode.INTERNAL, f"download of {repo} failed: {type(exc).__name__}: {exc}")


def plan_download(repo: str, endpoint: str, revision: str | None) -> RepoPlan:
    """Ask the server what to fetch: commit sha, files, sizes and hashes. Raises LlorchError."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint, token=endpoint_token(endpoint)).model_info(
            repo, revision=revision, files_metadata=True)
    except Exception as exc:  # noqa: BLE001 - mapped to a stable code with a hint
        raise hub_error(exc, repo, endpoint) from None
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    names = select_files(list(siblings))
    if not any(n.endswith(".safetensors") for n in names):
        raise LlorchError(
            ErrorCode.MODEL_INVALID, f"{repo} on {endpoint} has no safetensors weights at the top of the repository",
            "llorch loads safetensors checkpoints only; pick a repository (or revision) that has them", repo=repo)
    files = []
    for n in names:
        s = siblings[n]
        size = s.lfs.size if s.lfs else s.size
        if size is None:
            raise LlorchError(ErrorCode.NETWORK, f"{endpoint} did not report the size of {n} in {repo}",
                              "the endpoint does not speak the Hub's files metadata; use another endpoint")
        files.append(RemoteFile(n, int(size), s.lfs.sha256 if s.lfs else None, None if s.lfs else s.blob_id))
    if not info.sha:
        raise LlorchError(ErrorCode.NETWORK, f"{endpoint} did not report the commit of {repo}",
                          "the endpoint is not Hub-compatible; use another endpoint")
    return RepoPlan(repo, endpoint, info.sha, files, bool(info.gated))


class _CancelWatch:
    """Shuts the open response's socket when the caller cancels, so even a stalled read returns at once.

    Not `response.close()` from this thread: that takes the connection pool's lock while the reading
    thread holds it (a deadlock, seen here). A socket shutdown only makes the blocked recv() return.
    """

    def __init__(self, cancelled: threading.Event) -> None:
        self.cancelled, self.done = cancelled, threading.Event()
        self.response: Any = None  # the httpx response being read (huggingface_hub's session type)
        self.thread = threading.Thread(target=self._run, daemon=True, name="download-cancel-watch")
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.cancelled.wait(0.2):
                resp = self.response
                if resp is not None:
                    try:
                        sock = resp.extensions["network_stream"].get_extra_info("socket")
                        sock.shutdown(socket.SHUT_RDWR)
                    except Exception:  # noqa: BLE001 - best effort: the reader checks the flag at every chunk too
                        pass
                return

    def stop(self) -> None:
        self.done.set()


def _cancelled_error() -> LlorchError:
    return LlorchError(ErrorCode.CANCELLED, "download cancelled; the partial file is kept",
                       "run the same download again to continue from where it stopped")


def fetch_file(plan: RepoPlan, rf: RemoteFile, part: Path, *, on_bytes: Callable[[int], None],
               on_retry: Callable[[int, float, str], None], cancelled: threading.Event,
               policy: RetryPolicy) -> tuple[int, int, str]:
    """Fetch one file into `part`, continuing from its current length. Returns (fetched, resumed, sha256).

    The part is verified (size, then sha256 or git blob id) before returning; a mismatch deletes it and
    raises CHECKSUM_MISMATCH. A cancel keeps the part for the next attempt.
    """
    import httpx2
    from huggingface_hub import hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if have > rf.size:  # longer than the file can be: not ours to trust
        part.unlink()
        have = 0
    hasher = FileHasher(rf.size)
    if have:
        hasher.feed_file(part)
    resumed, fetched, failures = have, 0, 0
    url = hf_hub_url(plan.repo, rf.name, revision=plan.commit, endpoint=plan.endpoint)
    # the Hub's token only for the Hub; redirects to another host drop Authorization (httpx)
    base_headers = build_hf_headers(token=endpoint_token(plan.endpoint))
    base_headers["Accept-Encoding"] = "identity"  # byte ranges must be ranges of the file, not of a gzip stream
    timeout = httpx2.Timeout(policy.stall_s, connect=min(CONNECT_TIMEOUT_S, policy.stall_s))
    watch = _CancelWatch(cancelled)
    try:
        with part.open("ab") as out:
            while have < rf.size:
                if cancelled.is_set():
                    raise _cancelled_error()
                headers = dict(base_headers)
                if have:
                    headers["Range"] = f"bytes={have}-"
                progressed = False
                try:
                    with get_session().stream("GET", url, headers=headers, timeout=timeout,
                                              follow_redirects=True) as resp:
                        watch.response = resp
                        hf_raise_for_status(resp)
                        if have and resp.status_code == 200:  # range ignored: start over, cleanly
                            out.truncate(0)
                            out.seek(0)
                            hasher, have, resumed = FileHasher(rf.size), 0, 0
                        # As received (no chunk size): a stall must not swallow bytes buffered toward a chunk.
                        for chunk in resp.iter_bytes():
                            if cancelled.is_set():
                                raise _cancelled_error()
                            if have + len(chunk) > rf.size:
                                chunk = chunk[: rf.size - have]  # a longer body fails the hash below anyway
                            out.write(chunk)
                            hasher.update(chunk)
                            have += len(chunk)
                            fetched += len(chunk)
                            progressed = True
                            on_bytes(len(chunk))
                            if have >= rf.size:
                                break
                    if have < rf.size:
                        raise httpx2.RemoteProtocolError(f"connection closed at byte {have} of {rf.size}")
                except LlorchError:
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below
                    if cancelled.is_set():
                        raise _cancelled_error() from None
                    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
                    transient = isinstance(exc, httpx2.TransportError) or status in (408, 429, 500, 502, 503, 504)
                    if not transient:
                        raise hub_error(exc, plan.repo, plan.endpoint, rf.name) from None
                    out.flush()
                    failures = 1 if progressed else failures + 1
                    why = (f"no data for {policy.stall_s:g}s" if isinstance(exc, httpx2.TimeoutException)
                           else f"{type(exc).__name__}: {exc}")
                    if failures >= policy.max_attempts:
                        raise LlorchError(
                            ErrorCode.NETWORK, f"{rf.name} from {plan.endpoint}: gave up after {failures} attempts "
                            f"without progress ({why})",
                            "check the network and run the download again: it continues from the bytes already "
                            "fetched", endpoint=plan.endpoint, file=rf.name) from None
                    delay = min(policy.backoff_s * 2 ** (failures - 1), MAX_BACKOFF_S)
                    log.warning("%s: %s; retrying in %.1fs (attempt %d)", rf.name, why, delay, failures + 1)
                    on_retry(failures + 1, delay, why)
                    if cancelled.wait(delay):
                        raise _cancelled_error() from None
                finally:
                    watch.response = None
            out.flush()
            os.fsync(out.fileno())
    finally:
        watch.stop()
    _check_hashes(rf, part, hasher)
    return fetched, resumed, hasher.sha256.hexdigest()


def _check_hashes(rf: RemoteFile, part: Path, hasher: FileHasher) -> None:
    if rf.sha256 is not None:
        kind, expected, actual = "sha256", rf.sha256, hasher.sha256.hexdigest()
    elif rf.git_sha1 is not None:
        kind, expected, actual = "git blob sha1", rf.git_sha1, hasher.git_sha1.hexdigest()
    else:
        return
    if actual != expected.lower():
        part.unlink(missing_ok=True)
        raise LlorchError(
            ErrorCode.CHECKSUM_MISMATCH, f"{rf.name}: {kind} mismatch: expected {expected}, got {actual}",
            "the corrupt file was deleted and the catalog left unchanged; run the download again, and if it fails "
            "the same way the source serves a damaged file (try another endpoint)",
            file=rf.name, expected=expected, actual=actual, algorithm=kind)


