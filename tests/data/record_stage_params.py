"""Records the canonical params (a rule's one `settings` param) of the LLM and evaluation stages for
the demo and the paper config; recorded on commit 5423dc9, before LLMCall and the plan, from the repo
root: ``python3 tests/data/record_stage_params.py > tests/data/stage_params.json``. A deliberate
params change (it reruns those stages) records them again. Re-recorded once when the templates moved
into the package: only the `template` values changed (config/templates/x.txt -> builtin:x.txt; same
content hashes, so the rerun is answered from the LLM cache); when the report gained eval.report.lc
(method and difficulty: the report reruns, no LLM call); and when sft gained language_mismatch and
languages (issue 21: the SFT stage reruns, no LLM call)."""

import json

from bpo.settings import CritiqueEstimateSettings, CritiqueSettings, SFTSettings, load_config
from bpo.settings.evaluate import EndpointTargetSettings, JudgeSettings, OriginalAnswerSettings, ReportSettings
from bpo.settings.hf_target import HFTargetSettings
from bpo.settings.optimize import optimizer_settings

CONFIGS = {"demo": ("config/config.yaml",), "paper": ("config/config.yaml", "config/paper.yaml")}


def stage_params() -> dict:
    out = {}
    for name, paths in CONFIGS.items():
        c = load_config(*paths)
        d = out[name] = {
            "critique": CritiqueSettings.from_config(c).canonical(),
            "estimate": CritiqueEstimateSettings.from_config(c).canonical(),
            "sft": SFTSettings.from_config(c).canonical(),
            "judge": JudgeSettings.from_config(c).canonical(),
            "report": ReportSettings.from_config(c).canonical(),
        }
        ts = next(iter(c["eval"]["testsets"]))
        for t, cfg in c["eval"]["targets"].items():
            if cfg["kind"] == "endpoint" and cfg["endpoint"]:
                d[f"answer/{t}"] = EndpointTargetSettings.from_config(c, t).canonical()
                d[f"answer_original/{t}"] = OriginalAnswerSettings.from_config(c, ts, t).canonical()
            elif cfg["kind"] == "hf":
                d[f"answer_hf/{t}"] = HFTargetSettings.from_config(c, t).canonical()
        for o, cfg in c["eval"]["optimizers"].items():
            if cfg["kind"] == "model" and not cfg["model"]:
                continue
            d[f"optimize/{o}"] = optimizer_settings(c, ts, o).canonical()
    return out


if __name__ == "__main__":
    print(json.dumps(stage_params(), indent=1, sort_keys=True, default=str))
