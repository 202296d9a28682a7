"""Every prompt template goes through bpo.templates: built-in names resolve to the packaged files,
each kind is checked when the config is parsed (one line naming the key), a file changed after
planning is refused, and the stand-in answers what the built-in templates ask for."""

from __future__ import annotations

import hashlib

import pytest

from bpo.config_inputs import input_problems
from bpo.critique_parse import parse_critique
from bpo.eval.verdicts import parse_verdict
from bpo.llm.standin import reply_text
from bpo.settings import SettingsError, load_config
from bpo.settings.critique import CritiqueSettings
from bpo.templates import (
    BUILTIN,
    TemplateError,
    builtin_dir,
    builtin_names,
    load_critique,
    load_judge,
    load_rewrite,
    resolve,
    template_problem,
    template_sha256,
)
from bpo.vocab import VERDICTS


def _llm_rewrite(template: str) -> dict:
    return {
        "eval": {
            "optimizers": {"rw": {"kind": "llm_rewrite", "endpoint": "standin", "model": "m", "template": template}}
        }
    }


def test_builtin_templates_ship_in_the_package_and_resolve():
    assert builtin_names() == ["critique.txt", "judge.txt", "optimize_rewrite.txt"]
    for name in builtin_names():
        path = resolve(BUILTIN + name)
        assert path == builtin_dir() / name and path.is_file()
        assert template_sha256(BUILTIN + name) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert resolve("my/own.txt").as_posix() == "my/own.txt"  # a path stays a path
    with pytest.raises(TemplateError, match=r"builtin:nope.txt: no built-in template of that name \(built-in: "):
        resolve("builtin:nope.txt")


def test_the_config_defaults_name_the_builtin_templates_and_load():
    config = load_config()
    assert config["critique"]["template"] == "builtin:critique.txt"
    assert config["eval"]["judge"]["template"] == "builtin:judge.txt"
    load_critique(config["critique"]["template"])
    assert load_judge(config["eval"]["judge"]["template"]).system is None
    assert load_rewrite("builtin:optimize_rewrite.txt").fill("Say hi.").endswith("Prompt:\nSay hi.")
    assert CritiqueSettings.from_config(config).template_sha256 == template_sha256("builtin:critique.txt")


def test_an_unknown_builtin_is_a_settings_error_naming_the_key():
    config = load_config(overrides={"critique": {"template": "builtin:critic.txt"}})
    with pytest.raises(SettingsError, match="config critique.template: critique template builtin:critic.txt"):
        CritiqueSettings.from_config(config)
    assert input_problems(config) == [
        "config critique.template: no built-in template of that name "
        "(built-in: builtin:critique.txt, builtin:judge.txt, builtin:optimize_rewrite.txt)"
    ]


@pytest.mark.parametrize(
    "body, found",
    [
        ("Improve this prompt.", "placeholder {prompt} must appear exactly once (found 0)"),
        ("{prompt}\n# a comment line with {prompt} is dropped\n{prompt}", "(found 2)"),
    ],
)
def test_a_broken_rewrite_template_fails_when_the_config_is_parsed(tmp_path, body, found):
    """Before, only the file's existence was checked at parse time: the placeholder error came
    from the optimize job, after the planning."""
    path = tmp_path / "rw.txt"
    path.write_text(body)
    (line,) = input_problems(load_config(overrides=_llm_rewrite(str(path))))
    assert line.startswith(f"config eval.optimizers.rw.template: rewrite template {path}: ") and found in line


def test_every_kind_reports_a_missing_file_and_a_folder_by_key(tmp_path):
    assert input_problems(load_config(overrides=_llm_rewrite(str(tmp_path / "no.txt")))) == [
        f"config eval.optimizers.rw.template: {tmp_path / 'no.txt'} does not exist"
    ]
    for kind in ("critique", "judge", "rewrite"):
        assert template_problem(str(tmp_path), kind) == f"{tmp_path} is not a file"
        with pytest.raises(TemplateError, match="no such file"):
            {"critique": load_critique, "judge": load_judge, "rewrite": load_rewrite}[kind](tmp_path / "no.txt")


@pytest.mark.parametrize("loader", [load_critique, load_judge, load_rewrite])
def test_a_template_edited_after_planning_is_refused(tmp_path, loader):
    name = {load_critique: "critique.txt", load_judge: "judge.txt", load_rewrite: "optimize_rewrite.txt"}[loader]
    path = tmp_path / name
    path.write_bytes((builtin_dir() / name).read_bytes())
    planned = template_sha256(path)
    loader(path, planned)
    path.write_text(path.read_text() + "\nOne more line.\n")
    with pytest.raises(TemplateError, match="changed after the workflow was planned"):
        loader(path, planned)


def test_not_utf8_is_a_template_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("{prompt} café".encode("latin-1"))
    with pytest.raises(TemplateError, match="not UTF-8 text"):
        load_rewrite(path)


def test_the_standin_answers_what_the_builtin_templates_ask_for():
    """The stand-in keys on the reply label and the verdict tokens from bpo.vocab, the same words
    the templates are checked for: a filled built-in template gets a reply its parser accepts."""
    critique = load_critique("builtin:critique.txt").render("Explain tides.", "", "Tides.", "The moon pulls water.")
    parsed = parse_critique(reply_text({"model": "bpo-standin", "messages": [{"role": "user", "content": critique}]}))
    assert parsed.optimized_instruction and parsed.parse_error is None
    _, user = load_judge("builtin:judge.txt").fill(question="Q?", answer_a="a", answer_b="b")
    verdict = parse_verdict(reply_text({"model": "bpo-standin", "messages": [{"role": "user", "content": user}]}))
    assert verdict.verdict in VERDICTS
