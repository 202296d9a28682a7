"""A local HF target (rules answer_original_hf, answer_hf): answers through bpo.generation, the
engine in the metadata, greedy answers independent of batching, original answers reused."""

from __future__ import annotations

import json

import pytest

from bpo.eval.answer import answer_optimized, answer_original
from bpo.eval.hf_target import hf_answerer
from bpo.schemas import ANSWERS, OPTIMIZED, ORIGINAL_ANSWERS, read_metadata, read_table, write_table
from bpo.settings import load_config
from bpo.settings.hf_target import HFOriginalAnswerSettings, HFTargetSettings

ITEMS = [
    ("What is the capital of France?", "", "What is the capital city of France?", None),
    ("Summarize the text.", "Cats sleep a lot.", "Summarize the text below.", None),
    ("Name a colour.", "", "Name a colour.", "truncated"),  # fallback: the same question twice
]


@pytest.fixture
def optimized(tmp_path):
    rows = [
        {
            "item_id": str(i),
            "testset": "demo",
            "optimizer": "opt",
            "category": None,
            "instruction": ins,
            "context": ctx,
            "optimized_instruction": opt,
            "fallback_reason": fb,
            "reference_optimized": None,
        }
        for i, (ins, ctx, opt, fb) in enumerate(ITEMS)
    ]
    write_table(rows, tmp_path / "optimized.parquet", OPTIMIZED)
    return tmp_path / "optimized.parquet"


def _config(model, tmp_path=None, **target):
    testsets = {}
    if tmp_path is not None:
        path = tmp_path / "demo.jsonl"
        path.write_text(
            "".join(json.dumps({"id": str(i), "q": ins, "ctx": ctx}) + "\n" for i, (ins, ctx, _, _) in enumerate(ITEMS))
        )
        testsets = {
            "demo": {
                "format": "custom",
                "path": str(path),
                "columns": {"id": "id", "instruction": "q", "context": "ctx"},
            }
        }
    return load_config(
        overrides={
            "eval": {
                "testsets": testsets,
                "targets": {"tiny": {"kind": "hf", "model": model, "max_tokens": 12, "batch_size": 2, **target}},
            }
        }
    )


def _settings(model, **target):
    return HFTargetSettings.from_config(_config(model, **target), "tiny")


def _originals(tmp_path, model, **target):
    """The target's original answers of ITEMS (rule answer_original_hf)."""
    settings = HFOriginalAnswerSettings.from_config(_config(model, tmp_path, **target), "demo", "tiny")
    assert HFOriginalAnswerSettings.from_params(settings.canonical()) == settings
    out = tmp_path / f"original_{target.get('engine', 'auto')}.parquet"
    answer_original(out, settings.testset, settings.target.name, hf_answerer(settings.target))
    return out


def _answer(optimized, originals, out, settings):
    """Rule answer_hf's call: the one answering flow with a local-model answerer."""
    return answer_optimized(optimized, originals, out, settings.name, hf_answerer(settings))


def test_settings_from_the_target_section(tiny_target):
    s = _settings(tiny_target, temperature=0.7, seed=None)
    assert (s.name, s.model, s.dtype, s.system_prompt) == ("tiny", tiny_target, "auto", None)
    g = s.generation
    assert (g.engine, g.max_new_tokens, g.temperature, g.greedy, g.seed, g.batch_size) == ("auto", 12, 0.7, False, 0, 2)
    assert _settings(tiny_target).generation.greedy  # temperature 0 (the default) is greedy
    assert HFTargetSettings.from_params(s.canonical()) == s
    with pytest.raises(ValueError, match="eval.targets.standin has kind 'endpoint', not hf"):
        HFTargetSettings.from_config(load_config(), "standin")


@pytest.mark.parametrize("engine, expected", [("auto", "lean"), ("hf-generate", "hf-generate")])
def test_answers_with_the_engine_in_the_metadata(tmp_path, tiny_target, optimized, engine, expected):
    out = tmp_path / "answers.parquet"
    originals = _originals(tmp_path, tiny_target, engine=engine)
    stats = _answer(optimized, originals, out, _settings(tiny_target, engine=engine))
    assert stats["answered"] == 2  # the unchanged question reuses its original answer
    rows = read_table(out, ANSWERS).to_pylist()
    assert [r["item_id"] for r in rows] == ["0", "1", "2"] and stats["items"] == 3
    assert rows[1]["question_original"] == "Summarize the text.\nCats sleep a lot."  # context attached verbatim
    assert all(r["backend"] == "hf" and r["target"] == "tiny" for r in rows)
    assert rows[2]["answer_original"] == rows[2]["answer_optimized"]  # same question, same greedy answer
    # a random model rarely stops on its own: hitting max_tokens is reported as truncated
    assert {r["status_original"] for r in rows} <= {"ok", "truncated"} and stats["statuses"].get("truncated")
    meta = read_metadata(out)
    assert meta["generation_engine"] == stats["engine"] and meta["generation_engine"].startswith(f"{expected} ")
    assert meta["generation_engine_requested"] == engine


def test_rows_independent_of_batching_and_engine(tmp_path, tiny_target, optimized):
    settings = _settings(tiny_target)
    originals = _originals(tmp_path, tiny_target)
    _answer(optimized, originals, tmp_path / "a.parquet", settings)
    one_by_one = settings.replace(generation=settings.generation.replace(batch_size=1, engine="hf-generate"))
    _answer(optimized, originals, tmp_path / "b.parquet", one_by_one)
    a, b = (read_table(tmp_path / f"{x}.parquet", ANSWERS) for x in "ab")
    assert a.equals(b)


def test_unchanged_questions_load_no_model(tmp_path, tiny_target, optimized):
    """Identity (every question unchanged) compares each original answer with itself, without
    loading the target."""
    originals = _originals(tmp_path, tiny_target)
    rows = read_table(optimized, OPTIMIZED).to_pylist()
    write_table(
        [{**r, "optimizer": "identity", "optimized_instruction": r["instruction"]} for r in rows],
        tmp_path / "identity.parquet",
        OPTIMIZED,
    )
    missing = _settings(tiny_target).replace(model=str(tmp_path / "no-such-model"))  # loading would fail
    stats = _answer(tmp_path / "identity.parquet", originals, tmp_path / "a.parquet", missing)
    assert stats["answered"] == 0 and stats["engine"] is None
    answers = read_table(tmp_path / "a.parquet", ANSWERS).to_pylist()
    original = read_table(originals, ORIGINAL_ANSWERS).to_pylist()
    assert (
        [a["answer_optimized"] for a in answers]
        == [a["answer_original"] for a in answers]
        == [o["answer"] for o in original]
    )
