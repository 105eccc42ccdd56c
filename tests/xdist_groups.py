"""Groups for a parallel run (`pytest -n 2 --dist loadgroup`, pytest-xdist): every expensive fixture is made
once, on one xdist worker. Test files that share a session fixture of this suite (a certified SmolLM2 run, the
matrix's main run, the sshd pools, the shared workers) form one group, and a file is never split (its
module-scoped fixtures, its file order). The cheap shared fixtures below are simply made once per xdist worker."""

from __future__ import annotations

import pytest

# Made on each xdist worker that needs them (seconds, or a cache on disk), or guards every test uses: grouping
# by them would put (nearly) the whole suite into one group.
PER_WORKER = frozenset({
    "synth_models", "make_pool", "smollm2_entry", "smollm2_gguf", "smollm2_model", "make_smollm2_pool",
    "no_worker_template_left_behind", "no_worker_left_behind", "no_process_left_behind", "tmp_path_factory",
})


def _shared_session_fixtures(item: pytest.Item) -> list[str]:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    names = []
    for name, defs in info.name2fixturedefs.items():
        d = defs[-1]
        # only this suite's own fixtures (a plugin's, e.g. the asyncio loop policy, are the same everywhere)
        if d.scope == "session" and str(d.baseid).startswith("tests") and name not in PER_WORKER:
            names.append(name)
    return names


def assign(items: list[pytest.Item]) -> None:
    """Mark every item with `xdist_group(NAME)`: files joined by a shared session fixture get one name."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the smallest name names the group: stable between runs

    files = {item: item.nodeid.split("::")[0] for item in items}
    for item, file in files.items():
        find(file)
        for name in _shared_session_fixtures(item):
            union(file, "fixture:" + name)
    for item, file in files.items():
        item.add_marker(pytest.mark.xdist_group(find(file)))
