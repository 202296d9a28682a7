"""Records the cache keys of the demo's and the paper's LLM calls as built by the request code of
commit 5423dc9 (before the LLMCall settings type): run once there from the repo root,
``python3 tests/data/record_request_keys.py > tests/data/request_keys.json``. The test
(tests/test_llm_call.py) rebuilds the same calls with today's code and compares the keys."""

import json

from bpo.settings import load_config

PAIRS = [
    {"instruction": "Name a fruit.", "context": "", "bad_response": "car", "good_response": "apple"},
    {"instruction": "Sum it.", "context": "2 and 3", "bad_response": "6", "good_response": "5"},
]
QUESTIONS = ["What is 2+2?", "Write a haiku about rain.\n\nIt rains."]
ANSWERS = ("The answer is 4.", "Four.")
CONFIGS = {"demo": ("config/config.yaml",), "paper": ("config/config.yaml", "config/paper.yaml")}
# variants that exercise the system prompt of the answer and the judge
VARIANTS = {"": {}, "+system": {"eval": {"judge": {"system_prompt": "You judge."}}}}


def keys(config: dict) -> dict:
    # the code of commit 5423dc9 (imported here: the test imports this module's inputs only)
    from bpo.critique import _requests
    from bpo.critique import load_template as critique_template
    from bpo.eval.calls import chat_request
    from bpo.eval.judge import load_template as judge_template
    from bpo.eval.optimize import _REWRITE_PLACEHOLDER, load_rewrite_template
    from bpo.settings import CritiqueSettings
    from bpo.settings.evaluate import EndpointTargetSettings, JudgeSettings
    from bpo.settings.optimize import LLMRewriteSettings

    out = {}
    crit = CritiqueSettings.from_config(config)
    out["critique"] = [r.key for r in _requests(PAIRS, critique_template(crit.template), crit)]
    for name, t in config["eval"]["targets"].items():
        if t["kind"] == "endpoint" and t["endpoint"]:
            s = EndpointTargetSettings.from_config(config, name)
            out[f"answer/{name}"] = [
                chat_request(
                    s.model,
                    q,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    max_tokens=s.max_tokens,
                    seed=s.seed,
                    system=s.system_prompt,
                ).key
                for q in QUESTIONS
            ]
    j = JudgeSettings.from_config(config)
    template = judge_template(j.template)
    gen = dict(temperature=j.temperature, top_p=j.top_p, max_tokens=j.max_tokens, seed=j.seed)
    out["judge"] = []
    for a, b in (ANSWERS, ANSWERS[::-1]):
        system, user = template.fill(question=QUESTIONS[0], answer_a=a, answer_b=b)
        out["judge"].append(chat_request(j.model, user, system=system or j.system_prompt, **gen).key)
    for name, o in config["eval"]["optimizers"].items():
        if o["kind"] == "llm_rewrite":
            s = LLMRewriteSettings.from_config(config, next(iter(config["eval"]["testsets"])), name)
            tpl = load_rewrite_template(s.template)
            out[f"llm_rewrite/{name}"] = [
                chat_request(
                    s.model,
                    tpl.replace(_REWRITE_PLACEHOLDER, q),
                    system=None,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    max_tokens=s.max_tokens,
                    seed=s.seed,
                ).key
                for q in QUESTIONS
            ]
    return out


if __name__ == "__main__":
    out = {}
    for name, paths in CONFIGS.items():
        for v, over in VARIANTS.items():
            config = load_config(*paths, overrides=over)
            if over:  # every target with a system prompt too
                for t in config["eval"]["targets"].values():
                    t["system_prompt"] = "Answer briefly."
            out[f"{name}{v}"] = keys(config)
    print(json.dumps(out, indent=1, sort_keys=True))
