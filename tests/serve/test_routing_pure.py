"""Pure parts of routing, experiments, balancing and the catalog."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

from empathy.errors import ConfigError
from serve.catalog import Catalog, load_catalog
from serve.errors import APIError
from serve.experiments import Arm, Experiment, assign, check_arms, load_experiments_file
from serve.routing import Route, StickyCache, override_route, session_key, snap
from serve.upstreams import Upstream, pick

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]
CATALOG = Catalog(experts={"sensibility": "empathy-sensibility", "rationality": "empathy-rationality"},
                  blends={w: f"blend-{w}" for w in GRID})


def test_snap_to_grid() -> None:
    assert snap(0.75, GRID) == 0.75 and snap(0.7504, GRID) == 0.75 and snap(1, GRID) == 1.0
    for bad in (0.6, -0.1, 1.5, "x", True):
        with pytest.raises(APIError) as err:
            snap(bad, GRID)
        assert err.value.status == 400 and err.value.param == "empathy.blend"


def test_override_routes() -> None:
    assert override_route({"blend": 0.25}, CATALOG) == Route("blend-0.25", 0.25, "override")
    assert override_route({"expert": "rationality"}, CATALOG) == Route("empathy-rationality", 0.0, "override")
    with pytest.raises(APIError):
        override_route({"weight": 1}, CATALOG)


def test_session_key_precedence() -> None:
    body = {"user": "u1", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}
    assert session_key({"x-session-id": "s9"}, body) == "session:s9"
    assert session_key({}, body) == "user:u1"
    anon = session_key({}, {"messages": body["messages"]})
    longer = session_key({}, {"messages": [*body["messages"], {"role": "assistant", "content": "a"},
                                           {"role": "user", "content": "more"}]})
    assert anon == longer and anon.startswith("first:")


def test_sticky_cache_is_bounded_lru() -> None:
    cache = StickyCache(2)
    cache.put("a", Route("x"))
    cache.put("b", Route("y"))
    assert cache.get("a") == Route("x")
    cache.put("c", Route("z"))  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2


def test_assignment_is_stable_and_weighted() -> None:
    exp = Experiment(name="exp1", arms=[Arm(name="a", model="base", weight=1),
                                        Arm(name="b", model="blend:0.5", weight=3)])
    users = [f"user-{i}" for i in range(2000)]
    first = [assign(exp, u).name for u in users]
    assert first == [assign(exp, u).name for u in users]
    share = Counter(first)["b"] / len(users)
    assert 0.72 < share < 0.78


def test_experiments_file_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "exp.toml"
    toml.write_text('[[experiments]]\nname = "t1"\n[[experiments.arms]]\nname = "a"\nmodel = "base"\n'
                    '[[experiments.arms]]\nname = "b"\nmodel = "blend:0.25"\nweight = 2\n')
    yaml = tmp_path / "exp.yaml"
    yaml.write_text("experiments:\n  - name: y1\n    arms:\n      - {name: a, model: empathy}\n")
    (t1,) = load_experiments_file(toml)
    (y1,) = load_experiments_file(yaml)
    assert [a.weight for a in t1.arms] == [1.0, 2.0] and y1.arms[0].model == "empathy"
    check_arms(t1, CATALOG.gateway_models(), CATALOG.grid)
    with pytest.raises(ConfigError, match="not a served blend"):
        check_arms(Experiment(name="z", arms=[Arm(name="a", model="blend:0.3")]), ["base"], GRID)
    with pytest.raises(ConfigError, match="unknown model"):
        check_arms(Experiment(name="z", arms=[Arm(name="a", model="gpt-4")]), ["base"], GRID)
    with pytest.raises(ValueError):
        Experiment(name="empathy", arms=[Arm(name="a", model="base")])


def test_least_outstanding_pick() -> None:
    ups = [Upstream("u1", healthy=True, outstanding=3), Upstream("u2", healthy=True, outstanding=1),
           Upstream("u3", healthy=False, outstanding=0)]
    assert pick(ups).url == "u2"
    assert pick([Upstream("u3")]) is None


def test_catalog_from_data_dir(tmp_path: Path) -> None:
    for name in ("sensibility", "rationality"):
        (tmp_path / "experts" / name).mkdir(parents=True)
        (tmp_path / "experts" / name / "adapter_config.json").write_text(json.dumps({"r": 8}))
    catalog = load_catalog(tmp_path)  # no blends yet: the experts are the grid's ends
    assert catalog.blends == {0.0: "empathy-rationality", 1.0: "empathy-sensibility"}
    (tmp_path / "blends" / "blend-0.5-abc").mkdir(parents=True)
    (tmp_path / "blends" / "blend-0.5-abc" / "adapter_config.json").write_text(json.dumps({"r": 16}))
    (tmp_path / "blends" / "index.json").write_text(json.dumps(
        {"rank": 16, "blends": [{"weight": 0.5, "name": "blend-0.5-abc", "path": "blend-0.5-abc"}]}))
    catalog = load_catalog(tmp_path)
    assert catalog.grid == [0.5] and catalog.rank == 16
    assert catalog.paths["blend-0.5-abc"] == str((tmp_path / "blends" / "blend-0.5-abc").resolve())
    assert catalog.adapter_for_model("empathy-sensibility") == "empathy-sensibility"
    assert catalog.adapter_for_model("empathy-full") is None


def test_body_field_names_every_field_of_the_route() -> None:
    route = Route(adapter="blend-50", blend=0.5, source="router", probs=(0.25, 0.75))
    field = route.body_field()
    assert field == {f.name: getattr(route, f.name) for f in fields(Route)} | {"probs": [0.25, 0.75]}
    assert json.loads(json.dumps(field)) == field
