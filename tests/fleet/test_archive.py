"""`models export` / `models import`: one archive, verified on import; hostile archives refused, nothing installed."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from fleet_helpers import AGENT, agent


@pytest.fixture(scope="module")
def archive(synth_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    src = tmp_path_factory.mktemp("exporter")
    agent(src, "models", "register", "tl", "--path", str(synth_models["llama"]))
    out = tmp_path_factory.mktemp("out") / "tl.tar"
    res = agent(src, "models", "export", "tl", str(out))
    return out, res


def _fail(state: Path, *args: str) -> dict:
    r = subprocess.run([AGENT, "--state-dir", str(state), *args, "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])["error"]


def test_export_import_roundtrip_verifies_and_is_idempotent(archive: tuple[Path, dict], tmp_path: Path) -> None:
    path, exported = archive
    assert exported["bytes"] == path.stat().st_size and len(exported["model"]["files"]) == 6
    assert all(f["sha256"] for f in exported["model"]["files"])  # hashes measured for a --path registration
    res = agent(tmp_path, "models", "import", str(path))
    m = res["model"]
    assert m["downloaded"] and m["origin"]["kind"] == "archive" and m["origin"]["file"] == str(path)
    assert Path(m["path"]) == tmp_path / "models" / "tl"
    assert agent(tmp_path, "models", "verify", "tl", "--no-load")["ok"]
    assert agent(tmp_path, "models", "import", str(path))["noop"]
    renamed = agent(tmp_path, "models", "import", str(path), "--id", "tl2")["model"]
    assert renamed["id"] == "tl2" and (tmp_path / "models" / "tl2" / "model.safetensors").is_file()
    err = _fail(tmp_path, "models", "export", "tl", str(path))
    assert err["code"] == "already_exists" and "--force" in err["hint"]


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]  # type: ignore[union-attr]


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _hostile(archive: Path, tmp_path: Path, how: str) -> Path:
    members = _members(archive)
    manifest, rest = members[0], members[1:]
    if how == "traversal":
        info, data = rest[0]
        info.name = "files/../../../escaped"
        return _write(tmp_path / "h.tar", [manifest, (info, data), *rest[1:]])
    if how == "symlink":
        link = tarfile.TarInfo(rest[0][0].name)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        return _write(tmp_path / "h.tar", [manifest, (link, None), *rest[1:]])
    if how == "manifest_not_first":
        return _write(tmp_path / "h.tar", [*rest, manifest])
    if how == "extra_member":
        extra = tarfile.TarInfo("files/evil.py")
        return _write(tmp_path / "h.tar", [manifest, (extra, b"import os\n"), *rest])
    if how == "size_mismatch":
        info, data = rest[0]
        return _write(tmp_path / "h.tar", [manifest, (info, (data or b"") + b"x" * 4096), *rest[1:]])
    if how == "huge":
        doc = json.loads(manifest[1] or b"{}")
        for f in doc["entry"]["files"]:
            f["size"] = 2**50  # a petabyte per file
        return _write(tmp_path / "h.tar", [(manifest[0], json.dumps(doc).encode()), *rest])
    if how == "corrupt":
        i = next(i for i, (m, _) in enumerate(rest) if m.name.endswith(".safetensors"))
        info, data = rest[i]
        assert data is not None
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        rest[i] = (info, bytes(bad))
        return _write(tmp_path / "h.tar", [manifest, *rest])
    raise AssertionError(how)


@pytest.mark.parametrize("how,code,words", [
    ("traversal", "bad_request", "unexpected member"),
    ("symlink", "bad_request", "link or special file"),
    ("manifest_not_first", "bad_request", "first member"),
    ("extra_member", "bad_request", "unexpected member"),
    ("size_mismatch", "bad_request", "the manifest says"),
    ("huge", "disk_full", "not enough disk space"),
    ("corrupt", "checksum_mismatch", "sha256 mismatch"),
])
def test_hostile_archive_is_refused_and_installs_nothing(archive: tuple[Path, dict], tmp_path: Path, how: str,
                                                         code: str, words: str) -> None:
    bad = _hostile(archive[0], tmp_path, how)
    state = tmp_path / "state"
    err = _fail(state, "models", "import", str(bad))
    assert err["code"] == code and words in err["message"], err
    assert not (state / "models" / "tl").exists()
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    assert agent(state, "models", "list")["models"] == []


def test_the_reference_a_copy_keeps() -> None:
    """One reference per model across the fleet: the receiver's own when it is of these very weights, else the
    sender's, else the receiver's earlier one (of other weights: its runs then report the change)."""
    from datetime import datetime, timezone

    from llorch_tui.pool.receive import reference_after_copy
    from llorch_tui.protocol.catalog import ModelEntry, ModelFile
    from llorch_tui.protocol.parity import Fingerprint, weights_digest

    files = [ModelFile(name="model.safetensors", size=3, sha256="a" * 64), ModelFile(name="config.json", size=2,
                                                                                    sha256="b" * 64)]
    these = weights_digest([("model.safetensors", "a" * 64)])  # the weights hash covers weight files only

    def fp(weights: str, on: str) -> Fingerprint:
        return Fingerprint(prompt_set_version="prompts-v1", weights_sha256=weights,
                           recorded_at=datetime.now(timezone.utc), recorded_on=on)

    def entry(ref: Fingerprint | None) -> ModelEntry:
        return ModelEntry(id="m", name="m", path="/m", architecture="llama", files=files, fingerprint=ref)

    sender, mine_same, mine_other = fp(these, "a"), fp(these, "b"), fp("c" * 64, "b")
    assert reference_after_copy(entry(sender), entry(mine_same), files) is mine_same  # not overwritten
    assert reference_after_copy(entry(sender), entry(mine_other), files) is sender  # the model's reference
    assert reference_after_copy(entry(sender), None, files) is sender
    assert reference_after_copy(entry(None), entry(mine_other), files) is mine_other  # never dropped silently
    assert reference_after_copy(entry(None), None, files) is None
