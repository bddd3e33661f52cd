"""Router training and evaluation against the session's real vLLM server and the tiny real artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from empathy.errors import ConfigError
from empathy.layout import Layout
from empathy.settings import Settings, get_settings

LIMIT = 30  # router samples: enough for a two-sided hold-out split, seconds to score on the tiny model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Path) -> Path:
    """A data_dir of our own (router/ and eval/ are written here) that links to the shared tiny artifacts."""
    folder = tmp_path_factory.mktemp("router-data")
    for name in ("subsets", "experts", "blends"):
        (folder / name).symlink_to(tiny_artifacts / name, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def settings(data_dir: Path, tiny_model_dir: Path, corpus_dir: Path) -> Settings:
    return get_settings(data_dir=data_dir, base_model=str(tiny_model_dir), corpus_path=corpus_dir,
                        router_holdout=0.3, router_features="context", router_l2=0.1)


@pytest.fixture(scope="module")
def trained(settings: Settings, vllm_server: str) -> dict[str, Any]:
    """`train_router` on 30 validation samples scored by the session engine: the artifact, its metrics and
    the NLL cache that the tests below read (each test needs only this fixture, so any order works)."""
    from training.router.grid import read_blend_grid
    from training.router.train import train_router

    adapters, _ = read_blend_grid(settings.data_dir)
    return train_router(settings, adapters, "valid", limit=LIMIT, url=vllm_server)


@pytest.mark.slow
def test_train_router_then_route(settings: Settings, trained: dict[str, Any]) -> None:
    from empathy.router import Router
    from training.router.grid import read_blend_grid

    adapters, _ = read_blend_grid(settings.data_dir)
    assert set(trained["metrics"]["heldout"]["fixed"]) == {"0", "0.25", "0.5", "0.75", "1"}
    router = Router.load(Layout(settings.data_dir).router)
    router.check_blends([a.weight for a in adapters])
    probs = router.predict([{"role": "user", "content": "I just lost my job and I'm scared."}])
    assert len(probs) == 5 and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert router.choose([{"role": "user", "content": "hello"}]) in router.grid


@pytest.mark.slow
def test_router_metrics_recomputed_from_cache_and_artifact(settings: Settings,
                                                           trained: dict[str, Any]) -> None:
    """The reported held-out numbers, recomputed here from the cached NLL table: each fixed blend's and the
    oracle's mean NLL directly, the router's from a refit on the held-in rows; and the served artifact
    predicts what a fit on every row predicts (no train/serve skew in features or saved weights)."""
    from empathy.router import ContextEncoder, Router, featurize
    from training.router.cache import load_cache
    from training.router.fit import fit_softmax_regression, holdout_mask, soft_targets
    from training.router.grid import read_blend_grid
    from training.router.train import router_samples

    adapters, _ = read_blend_grid(settings.data_dir)
    samples = router_samples(settings, "valid", LIMIT)
    cached = load_cache(Layout(settings.data_dir).router, [a.name for a in adapters])
    nll = np.array([cached[s.id] for s in samples])
    held = holdout_mask([s.conv_id for s in samples], settings.router_holdout)
    report = trained["metrics"]["heldout"]
    assert report["n"] == int(held.sum()) > 0
    assert report["fixed"] == pytest.approx({f"{a.weight:g}": float(nll[held, j].mean())
                                             for j, a in enumerate(adapters)}, abs=1e-9)
    assert report["oracle"] == pytest.approx(float(nll[held].min(axis=1).mean()), abs=1e-9)
    features = featurize(ContextEncoder(), [s.messages() for s in samples])
    targets = soft_targets(nll, settings.router_temperature)
    held_in = fit_softmax_regression(features[~held], targets[~held], l2=settings.router_l2)
    choice = held_in.probs(features[held]).argmax(axis=1)
    assert report["router_argmax"] == pytest.approx(float(nll[held][np.arange(len(choice)), choice].mean()),
                                                    abs=1e-6)
    everything = fit_softmax_regression(features, targets, l2=settings.router_l2)
    served = Router.load(Layout(settings.data_dir).router).predict_many([s.messages() for s in samples])
    np.testing.assert_allclose(served, everything.probs(features), atol=1e-4)


@pytest.fixture(scope="module")
def kind_settings(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Path, settings: Settings
                  ) -> Settings:
    """A data dir whose selection scored 300 validation replies (R: a made-up function of the reply, enough
    for the plumbing), for the default `reply-kind` router. Scored samples without an expert of their own
    count as expert data (`training.router.train.subset_ids`), so the router draws other samples."""
    from selection.corpus import load_corpus
    from selection.subsets import Scored, row

    folder = tmp_path_factory.mktemp("router-kind")
    for name in ("experts", "blends"):
        (folder / name).symlink_to(tiny_artifacts / name, target_is_directory=True)
    (folder / "subsets").mkdir()
    samples = load_corpus(settings, "valid").samples[:300]
    rows = [row(Scored(s, 7.0, 3.0 + s.response.count(" ") / 5, "sensibility")) for s in samples]
    (folder / "subsets" / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "subsets" / "manifest.json").write_text(json.dumps({"split": "valid"}))
    return get_settings(data_dir=folder, base_model=settings.base_model, corpus_path=settings.corpus_path,
                        router_holdout=0.3)


@pytest.mark.slow
def test_reply_kind_router_end_to_end(kind_settings: Settings, vllm_server: str) -> None:
    """The default router: the ridge context -> R on the scored replies outside the router's conversations,
    a line per blend, collapsed into the one softmax regression the gateway serves."""
    from empathy.router import Router
    from selection.corpus import load_corpus
    from training.router.grid import read_blend_grid
    from training.router.train import router_samples, train_router

    assert kind_settings.router_features == "reply-kind"
    adapters, _ = read_blend_grid(kind_settings.data_dir)
    meta = train_router(kind_settings, adapters, "valid", limit=LIMIT, url=vllm_server)
    convs = {s.conv_id for s in router_samples(kind_settings, "valid", LIMIT)}
    scored = load_corpus(kind_settings, "valid").samples[:300]
    kind = meta["reply_kind"]
    # It learns from every scored reply outside the router's conversations.
    assert kind["split"] == "valid" and kind["n"] == sum(s.conv_id not in convs for s in scored) > 250
    assert "router_samples_spearman" not in kind and kind["tau"] > 1  # the router's samples are unscored
    assert meta["metrics"]["crossfit"]["n"] == LIMIT
    router = Router.load(Layout(kind_settings.data_dir).router)
    probs = router.predict_many([[{"role": "user", "content": "My dog died."}]])
    assert probs.shape == (1, 5) and probs.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_router_nll_cache_resumes_and_transformers_agrees(settings: Settings, trained: dict[str, Any],
                                                          vllm_server: str) -> None:
    """Every row of the run above is cached: scoring again needs no engine (the URL refuses
    connections), and transformers+PEFT (merged adapters, left padding) scores new rows like vLLM."""
    from training.router.cache import load_cache
    from training.router.grid import read_blend_grid
    from training.router.train import nll_scorer, router_samples, score_nll

    adapters, _ = read_blend_grid(settings.data_dir)
    samples = router_samples(settings, "valid", LIMIT)
    cached = load_cache(Layout(settings.data_dir).router, [a.name for a in adapters])
    assert {s.id for s in samples} <= set(cached)
    again = score_nll(settings, samples, adapters, "vllm", url="http://127.0.0.1:9")
    assert np.array_equal(again, np.array([cached[s.id] for s in samples]))
    more = router_samples(settings, "valid", LIMIT + 4)
    table = score_nll(settings, more, adapters, "transformers", url=None, batch_size=3)
    assert np.array_equal(table[:LIMIT], again)
    with nll_scorer(settings, adapters, "vllm", vllm_server, batch_size=4) as score:
        fresh = np.array(score([s.messages() for s in more[LIMIT:]]))
    np.testing.assert_allclose(table[LIMIT:], fresh, atol=1e-3)


@pytest.mark.slow
def test_eval_cli_writes_run_and_table(settings: Settings, vllm_server: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from training import eval_cli

    monkeypatch.setenv("EMPATHY_CORPUS_PATH", str(settings.corpus_path))
    monkeypatch.setenv("EMPATHY_EVAL_MAX_TOKENS", "16")
    args = ["--data-dir", str(settings.data_dir), "--split", "test", "--limit", "5", "--url", vllm_server]
    assert eval_cli.main([*args, "--model", "sensibility,blend:0.5"]) == 0
    run = json.loads((settings.data_dir / "eval" / "sensibility-test-n5.json").read_text())
    assert run["n"] == 5 and len(run["outputs"]) == 5
    assert run["served"] == {"empathy-sensibility": 5}
    assert 0.0 <= run["metrics"]["bleu1"] <= 1.0 and run["metrics"]["avg_len"] > 0
    capsys.readouterr()
    assert eval_cli.main(["table", "--data-dir", str(settings.data_dir)]) == 0
    table = capsys.readouterr().out
    assert "| sensibility | test | 5 |" in table and "| blend:0.5 | test | 5 |" in table
    assert "BLEU-1" in table and "Dist-2" in table


def test_eval_rejects_unknown_models(settings: Settings) -> None:
    from training.evaluation.generate import parse_model

    with pytest.raises(ConfigError, match="not one of"):
        parse_model("gpt", settings.data_dir)
    with pytest.raises(ConfigError, match=r"no blend with weight 0\.3"):
        parse_model("blend:0.3", settings.data_dir)
    assert parse_model("blend:0.25", settings.data_dir).served.startswith("blend-0.25-")
