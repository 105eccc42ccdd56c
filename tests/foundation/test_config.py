"""Configuration lookup, merging, provenance and errors; `llorch config init|show`."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation_helpers import llorch_cli, snapshot
from llorch_tui.config import SEED_PRESETS, MatrixConfig, ModelPreset, PoolConfig
from llorch_tui.config_load import EMBEDDED, load_config, write_config
from llorch_tui.errors import LlorchError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real ~/.config is read: XDG points into tmp, $LLORCH_CONFIG unset."""
    monkeypatch.delenv("LLORCH_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_embedded_default() -> None:
    loaded = load_config()
    assert loaded.source is None and [p.name for p in loaded.config.pools] == ["local"]
    assert [m.id for m in loaded.config.models] == [m.id for m in SEED_PRESETS]
    assert set(loaded.provenance.values()) == {EMBEDDED}


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg" / "llorch" / "config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text('[[pools]]\nname = "from-xdg"\n')
    assert load_config().config.pools[0].name == "from-xdg"
    env_file = tmp_path / "env.toml"
    env_file.write_text('[[pools]]\nname = "from-env"\n')
    monkeypatch.setenv("LLORCH_CONFIG", str(env_file))
    loaded = load_config()
    assert loaded.config.pools[0].name == "from-env" and loaded.found_by == "$LLORCH_CONFIG"
    assert loaded.provenance["pools.from-env"] == f"{env_file} ($LLORCH_CONFIG)"
    flag = tmp_path / "flag.toml"
    flag.write_text('[[pools]]\nname = "from-flag"\n')
    assert load_config(str(flag)).config.pools[0].name == "from-flag"
    monkeypatch.setenv("LLORCH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(LlorchError) as exc:
        load_config()
    assert exc.value.code == "config_invalid" and "does not exist" in exc.value.message
    assert "llorch config init" in (exc.value.hint or "")


def test_merge_and_provenance(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[[models]]\nid = "phi3"\nname = "My Phi"\nrepo = "me/phi"\narchitecture = "phi3"\n'
                 '[[models]]\nid = "extra"\nname = "Extra"\nrepo = "me/extra"\narchitecture = "llama"\n')
    loaded = load_config(str(f))
    assert [p.name for p in loaded.config.pools] == ["local"]  # no pools in the file: the embedded one
    assert loaded.provenance["pools.local"] == EMBEDDED
    presets = {m.id: m for m in loaded.config.models}
    assert set(presets) == {"tinyllama", "qwen-0.5b", "phi3", "mistral", "extra"}
    assert presets["phi3"].repo == "me/phi"  # the file wins by id
    assert loaded.provenance["models.phi3"] == str(f) and loaded.provenance["models.tinyllama"] == EMBEDDED
    assert loaded.provenance["matrix"] == EMBEDDED


BAD = [
    ("syntax", 'name = "x"\n[[pools]\nname = "a"\n', ["TOML syntax error at line 2"], None),
    ("unknown key", '[[pools]]\nname = "a"\n[[pools]]\nname = "b"\ntransport = "ssh"\nhost = "h"\nprot = 22\n',
     ["unknown key pools[1].prot"], "did you mean 'port'"),
    ("unknown top", '[matrx]\nmodels = []\n', ["unknown key matrx"], "did you mean 'matrix'"),
    ("wrong type", '[matrix]\nmax_tokens = "many"\n', ["matrix.max_tokens", "integer"], "type"),
    ("duplicate", '[[pools]]\nname = "a"\n[[pools]]\nname = "a"\n', ["pools", "duplicate pool name(s): a"], "its own name"),
    ("ssh no host", '[[pools]]\nname = "gpu"\ntransport = "ssh"\n', ["pools[0].host", "needs host"], "host ="),
    ("bad pool name", '[[pools]]\nname = "a;b"\n', ["pools[0].name", "invalid"], "letters"),
    ("bad backend", '[[pools]]\nname = "a"\nbackends = ["tpu"]\n', ["pools[0].backends[0]"], "type"),
]


@pytest.mark.parametrize("what, text, words, fix", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_file_key_and_fix(tmp_path: Path, what: str, text: str, words: list[str],
                                           fix: str | None) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    before = snapshot(tmp_path)
    with pytest.raises(LlorchError) as exc:
        load_config(str(f))
    err = exc.value
    assert err.code == "config_invalid" and str(f) in err.message
    for w in words:
        assert w in err.message, (w, err.message)
    assert err.hint and (fix is None or fix in err.hint), err.hint
    assert snapshot(tmp_path) == before


def test_example_validates_and_documents_every_key(tmp_path: Path) -> None:
    loaded = load_config(str(EXAMPLE))
    assert [p.name for p in loaded.config.pools] == ["local"]
    text = EXAMPLE.read_text()
    for model in (PoolConfig, ModelPreset, MatrixConfig):
        for key in model.model_fields:
            assert f"{key} = " in text, f"config.example.toml does not document {model.__name__}.{key}"
    # The commented examples are valid too once uncommented.
    out, block = [], False
    for line in text.splitlines():
        if line in ("# [[pools]]", "# [[models]]"):
            block = True
        elif not line.startswith("# "):
            block = False
        out.append(line[2:] if block else line)
    f = tmp_path / "uncommented.toml"
    f.write_text("\n".join(out))
    full = load_config(str(f)).config
    ssh = [p for p in full.pools if p.transport == "ssh"]
    assert len(ssh) == 2 and ssh[0].proxy_jump and ssh[0].identity_file and ssh[0].env
    assert full.preset("smollm-135m") is not None


def test_write_config_is_atomic_and_refuses_overwrite(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    cfg = load_config().config
    write_config(f, cfg)
    first = f.read_bytes()
    with pytest.raises(LlorchError) as exc:
        write_config(f, cfg)
    assert exc.value.code == "already_exists" and "--force" in (exc.value.hint or "")
    assert f.read_bytes() == first
    write_config(f, cfg.model_copy(update={"pools": [PoolConfig(name="other")]}), force=True)
    assert [p.name for p in load_config(str(f)).config.pools] == ["other"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_write_config_where_it_cannot_be_written_is_a_llorch_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")  # a file where the config's directory should be
    with pytest.raises(LlorchError) as exc:
        write_config(tmp_path / "file" / "config.toml", load_config().config)
    assert exc.value.code == "internal" and "file" in exc.value.message and exc.value.hint


def test_cli_init_and_show(tmp_path: Path) -> None:
    target = tmp_path / "new" / "config.toml"
    r = llorch_cli("config", "init", "--path", str(target))
    assert r.rc == 0, r.err
    assert target.read_text() == EXAMPLE.read_text()
    r = llorch_cli("config", "init", "--path", str(target), "--json")
    assert r.rc == 1 and r.json()["error"]["code"] == "already_exists"
    assert llorch_cli("config", "init", "--path", str(target), "--force").rc == 0
    r = llorch_cli("--config", str(target), "config", "show", "--json")
    assert r.rc == 0, r.err
    doc = r.json()
    assert doc["source"] == str(target) and doc["provenance"]["pools.local"] == str(target)
    assert doc["provenance"]["models.mistral"] == EMBEDDED and doc["config"]["matrix"]["max_tokens"] == 16
    human = llorch_cli("config", "show", env={"LLORCH_CONFIG": str(target)})
    assert human.rc == 0 and "where each part came from" in human.out and "$LLORCH_CONFIG" in human.out


def test_cli_show_bad_config(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[[pools]]\nname = "a"\nprot = 1\n')
    before = f.read_bytes()
    r = llorch_cli("config", "show", "--config", str(f))
    assert r.rc == 1 and "unknown key pools[0].prot" in r.err and "hint:" in r.err
    assert f.read_bytes() == before
