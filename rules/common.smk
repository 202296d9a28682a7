# Helpers shared by every rule file. Validation runs first so a bad key fails at parse time.
import os
import re

from bpo.config_inputs import check_inputs
from bpo.settings.config import load_schema, validate_config
from bpo.settings.plan import Plan, optimizer_model
from bpo.sources import SOURCES

# One line per problem (key path, "did you mean"); schema defaults filled in. The schema ships
# inside the bpo package the rules import (bpo/resources/schema.yaml): it always matches the
# settings code that reads the config.
validate_config(config, load_schema())
# Every configured local input must exist, checked here and not left to the rules' inputs:
# Snakemake takes an existing output as a plain input when the job producing it cannot be
# planned, so a missing input would pass silently once outputs exist (see bpo/config_inputs.py).
check_inputs(config)
# What runs (active sources, test sets, optimizers and targets by kind): decided in bpo.settings.plan.
PLAN = Plan.from_config(config)


# Each config writes under its own roots (run_name), so two configs never touch each other's
# outputs, logs or benchmarks; `.bpo-cache/` (the LLM cache, base models) stays shared on purpose.
RUN_NAME = config["run_name"]


def result(path):
    return f"results/{RUN_NAME}/{path}"


def log_file(path):
    return f"logs/{RUN_NAME}/{path}"


def benchmark_file(path):
    return f"benchmarks/{RUN_NAME}/{path}"


# Rules that call an LLM API run on the submit host: compute nodes often have no internet.
localrules:
    all,


def active_sources():
    """Names of the preference sources switched on in config (in config order)."""
    return list(PLAN.sources)


# --- data stage (rules/data.smk) ---
from bpo.settings import MergeSettings, PairsSourceSettings


def pairs_source_inputs(wildcards):
    """The local files a source reads, so editing one reruns it; none when a hub id is set.
    A folder stands for the data files inside it (a folder's own mtime misses edits)."""
    from pathlib import Path

    from bpo.readers import data_files
    from bpo.sources import local_inputs

    inputs = {}
    for role, path in local_inputs(wildcards.source, config["sources"][wildcards.source]).items():
        inputs[role] = [str(f) for f in data_files(path)] if Path(path).is_dir() else path
    return inputs


def pairs_source_settings(wildcards):
    """Everything that changes a source's pairs: its config section and the cleaning limits."""
    return PairsSourceSettings.from_config(config, wildcards.source).canonical()


def pairs_merge_settings():
    """Whether the merge drops duplicates across sources."""
    return MergeSettings.from_config(config).canonical()


# --- end data stage ---


def get_final_output():
    """Targets of `rule all`, following the config's activate switches."""
    targets = expand(result("pairs/{source}.parquet"), source=active_sources())
    targets.append(result("pairs/all.parquet"))
    targets += [
        result("sft/train.parquet"),
        result("sft/val.parquet"),
        result("sft/filter_report.json"),
    ]  # rules/critique.smk
    targets.append(result("models/optimizer"))  # rules/train.smk
    targets += refine_outputs()  # rules/refine.smk (none unless refine.activate)
    targets += eval_report_outputs()  # rules/report.smk
    return targets


# --- critique stage (rules/critique.smk) ---
from bpo.settings import CritiqueEstimateSettings, CritiqueSettings, SFTSettings


def critique_settings():
    """Endpoint, model, sampling and the template (path and content hash: editing the file
    reruns the critiques, a touch does not)."""
    return CritiqueSettings.from_config(config).canonical()


def critique_estimate_settings():
    """The critique settings and the active sources to estimate."""
    return CritiqueEstimateSettings.from_config(config).canonical()


def sft_mode():
    return config["sft"]["source"]


def sft_inputs(wildcards):
    """Critique mode: the pairs and every active source's critiques. BPO-format mode: the
    local dataset file(s), or nothing when it comes from the hub."""
    if sft_mode() == "critiques":
        return {
            "pairs": result("pairs/all.parquet"),
            "critiques": expand(result("critiques/{source}.parquet"), source=active_sources()),
        }
    bpo = config["sft"]["bpo_dataset"]
    if bpo["hub_id"] or not bpo["path"]:
        return {}
    from bpo.readers import ReadError, data_files

    try:
        return {"bpo_dataset": [str(f) for f in data_files(bpo["path"])]}
    except ReadError as exc:
        raise ValueError(f"config sft.bpo_dataset.path: {exc}")


def sft_settings():
    """Filter rules, split and context formats; the BPO-format source only in that mode."""
    return SFTSettings.from_config(config).canonical()


# --- train stage (rules/train.smk) ---
def train_settings():
    """TrainSettings' canonical form: every result-relevant `train` key (not `checkpoint`)."""
    from bpo.settings.train import TrainSettings

    return TrainSettings.from_config(config).canonical()


def train_threads():
    """One torch thread for the tiny from-scratch model (OpenMP threads of a model that small
    mostly wait on each other, badly so on shared cores); every core for a pretrained base
    (Snakemake scales this down to --cores)."""
    return 1 if config["train"]["base_model"] is None else 64


def deepspeed_config_input():
    path = config["train"]["deepspeed"]
    return [path] if path else []


# --- optimize stage (rules/evaluate.smk) ---
# Rules optimize_testset, optimize_identity, optimize_llm_rewrite, sft_rewrite_optimize and the
# hf answers: one `settings` param each, the canonical form of their bpo.settings class (runtime
# values are not in it). Each optimizer's settings name it, so editing one optimizer reruns only
# its branch.
def eval_optimizers(*kinds):
    """Active optimizer names (config order), optionally of some kinds."""
    return PLAN.optimizers_of(*kinds)


def optimize_settings(wildcards):
    from bpo.settings.optimize import optimizer_settings

    return optimizer_settings(config, wildcards.testset, wildcards.optimizer).canonical()


def sft_rewrite_optimize_settings(wildcards):
    from bpo.settings.optimize import OptimizeSettings
    from bpo.settings.testsets import SFT_REWRITE

    return OptimizeSettings.from_config(config, SFT_REWRITE, config["eval"]["sft_rewrite"]["optimizer"]).canonical()


def optimize_testset_input(wildcards):
    """The test set file (a local path, or where rule download_testset puts it)."""
    from bpo.settings.testsets import TestsetSettings

    return TestsetSettings.from_config(config, wildcards.testset).path


def sft_rewrite_optimize_input(wildcards):
    return config["eval"]["sft_rewrite"]["path"] or []


def _optimizer_model(name):
    """The folder of a generating optimizer when it is local: the trained one for kind trained
    (a hub id is in the settings only)."""
    model = optimizer_model(config, name)
    if model == "trained":
        return [result("models/optimizer")]
    if model == "refined":
        from bpo.settings.optimize import refined_round

        return [result(f"refine/round{refined_round(config, name)}/model")]
    if model:
        return local_model_input(model)
    return endpoint_model_input(config["eval"]["optimizers"][name].get("endpoint"))


def endpoint_model_input(endpoint):
    """The folder of a `backend: local` endpoint's model when a rule builds it (rule base_model),
    so it is built before the first call; nothing for other endpoints."""
    ep = config["llm"]["endpoints"].get(endpoint) if endpoint else None
    return wheel_model_input(ep.get("model")) if ep and ep.get("backend") == "local" else []


def sft_rewrite_target_model_input(wildcards):
    return endpoint_model_input(config["eval"]["targets"][config["eval"]["sft_rewrite"]["target"]].get("endpoint"))


def optimizer_model_input(wildcards):
    return _optimizer_model(wildcards.optimizer)


def sft_rewrite_optimizer_model_input(wildcards):
    return _optimizer_model(config["eval"]["sft_rewrite"]["optimizer"])


def answer_hf_settings(wildcards):
    from bpo.settings.hf_target import HFTargetSettings

    return HFTargetSettings.from_config(config, wildcards.target).canonical()


def answer_original_hf_settings(wildcards):
    from bpo.settings.hf_target import HFOriginalAnswerSettings

    return HFOriginalAnswerSettings.from_config(config, wildcards.testset, wildcards.target).canonical()


def hf_target_model_input(wildcards):
    return local_model_input(config["eval"]["targets"][wildcards.target]["model"])


# --- end optimize stage ---


# --- evaluate stage (rules/evaluate.smk) ---


def eval_testsets():
    """Active test set names (config order)."""
    return list(PLAN.testsets)


def eval_targets(kind=None):
    """Active target names, optionally of one kind (endpoint | hf)."""
    return PLAN.targets_of(kind)


def _names_regex(names):
    # A constraint that matches nothing when no target has this kind.
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


def downloaded_testsets():
    """Test sets fetched by URL (no local path set)."""
    return [n for n, c in config["eval"]["testsets"].items() if c.get("url") and not c.get("path")]


def local_model_input(model):
    """A model folder as an input when it is a local path or one rule base_model builds (then
    Snakemake builds it first); a hub id is a param only."""
    return wheel_model_input(model) or ([model] if os.path.exists(model) else [])


# The LLM rules of evaluation and the report pass ONE param each: their settings' canonical form.
from bpo.settings.evaluate import (
    EndpointTargetSettings,
    JudgeSettings,
    OriginalAnswerSettings,
    ReportSettings,
    SFTRewriteSettings,
)


def answer_settings(wildcards):
    """Result settings of an endpoint target, its endpoint included (limits are runtime)."""
    return EndpointTargetSettings.from_config(config, wildcards.target).canonical()


def answer_original_settings(wildcards):
    """The test set read and the endpoint target answering its original questions."""
    return OriginalAnswerSettings.from_config(config, wildcards.testset, wildcards.target).canonical()


def judge_settings(wildcards):
    """The judge's model, sampling, endpoint, template (by path and content hash), protocol."""
    return JudgeSettings.from_config(config).canonical()


# --- multi-turn test sets (format mt_bench): converse_original, converse, judge_turns ---


def multi_turn_testsets():
    return list(PLAN.multi_turn_testsets)


def _target_settings(name):
    """A target's result settings, by its kind (endpoint or hf)."""
    from bpo.settings.hf_target import HFTargetSettings

    cls = HFTargetSettings if PLAN.targets[name] == "hf" else EndpointTargetSettings
    return {"kind": PLAN.targets[name], **cls.from_config(config, name).canonical()}


def converse_original_settings(wildcards):
    """The multi-turn test set read and the target that answers its original conversations."""
    from bpo.settings.testsets import TestsetSettings

    return {
        "testset": TestsetSettings.from_config(config, wildcards.testset).canonical(),
        "target": _target_settings(wildcards.target),
    }


def converse_settings(wildcards):
    """The optimizer rewriting each turn (its settings name the test set) and the target answering."""
    from bpo.history import HISTORY_TOKENS
    from bpo.settings.optimize import optimizer_settings

    return {
        "optimizer": optimizer_settings(config, wildcards.testset, wildcards.optimizer).canonical(),
        "target": _target_settings(wildcards.target),
        # the budget a local optimizer fits each turn's history to: a new one reruns the conversations
        "history_tokens": HISTORY_TOKENS,
    }


def target_model_input(wildcards):
    """A local HF target's folder (an input); nothing for an endpoint target."""
    return hf_target_model_input(wildcards) if PLAN.targets.get(wildcards.target) == "hf" else []


def judge_turns_settings(wildcards):
    """The judge with the multi-turn template (by path and content hash)."""
    return JudgeSettings.from_config(config, multi_turn=True).canonical()


def sft_rewrite_answer_settings(wildcards):
    return SFTRewriteSettings.from_config(config).canonical()


# --- report stage (rules/report.smk) ---
def eval_triples():
    """(test set, optimizer, target) triples that the report covers."""
    return PLAN.triples()


def report_cells():
    """Every judged cell: the prompt comparisons, then the model comparisons (sft_data students,
    (test set, model B, model A) in the same path levels)."""
    return eval_triples() + PLAN.model_comparisons()


def report_judgments():
    return [result(f"eval/{ts}/{opt}/{tg}/judgments.parquet") for ts, opt, tg in report_cells()]


def report_answers():
    return [result(f"eval/{ts}/{opt}/{tg}/answers.parquet") for ts, opt, tg in report_cells()]


def browse_prompts():
    """The questions of the model comparisons, for the browser (the report has no optimizer there)."""
    return [result(f"eval/{ts}/{b}/{a}/prompts.parquet") for ts, b, a in PLAN.model_comparisons()]


def report_turn_judgments():
    return [result(f"eval/{ts}/{opt}/{tg}/turn_judgments.parquet") for ts, opt, tg in PLAN.turn_triples()]


def report_conversations():
    return [result(f"eval/{ts}/{opt}/{tg}/conversations.parquet") for ts, opt, tg in PLAN.turn_triples()]


def report_optimized():
    return [result(f"eval/{ts}/{opt}/optimized.parquet") for ts in eval_testsets() for opt in eval_optimizers()]


def report_settings():
    return ReportSettings.from_config(config).canonical()


def eval_report_outputs():
    """Final outputs of the evaluation (empty when no test set, optimizer or target is active)."""
    out = []
    if report_cells() or PLAN.turn_triples():
        out += [
            result("report/winrates.parquet"),
            result("report/summary.md"),
            result("report/summary.html"),
            result("report/winrates.png"),
            result("report/compare.png"),
            result("report/intrinsic.json"),
            result("report/browse.html"),  # rules/report.smk, rule browse
        ]
    if PLAN.sft_rewrite:
        out += [result("sft_rewrite/reproduce.json"), result("sft_rewrite/train.json")]
    return out


# --- sft_data stage (rules/sft_data.smk) ---
from bpo.settings.plan import STUDENTS as STUDENT_NAMES


def sft_data_settings():
    from bpo.settings.sft_data import StudentDataSettings

    return StudentDataSettings.from_config(config).canonical() if PLAN.sft_data else {}


def _student_train():
    from bpo.settings.sft_data import student_train_settings

    return student_train_settings(config) if PLAN.sft_data else None


def student_train_params():
    """The students' one recipe (TrainSettings' canonical form): an edit retrains both."""
    settings = _student_train()
    return settings.canonical() if settings else {}


def student_base_model():
    settings = _student_train()
    return settings.base_model if settings else None


def student_deepspeed_input():
    settings = _student_train()
    return [settings.deepspeed] if settings and settings.deepspeed else []


def student_threads():
    """As train_threads(): one torch thread for the tiny model, every core for a pretrained base."""
    return 1 if student_base_model() is None else 64


def student_answer_params(wildcards):
    from bpo.settings.sft_data import student_answer_settings

    model = result(f"models/{wildcards.student}")
    return student_answer_settings(config, wildcards.testset, wildcards.student, model).canonical()


# --- models (rules/models.smk) ---
from bpo.base_models import DEFAULT_CACHE_DIR as _WHEEL_MODEL_CACHE
from bpo.base_models import WHEEL_MODELS as _WHEEL_MODELS
from bpo.base_models import wheel_model as _wheel_model


def wheel_model_names_regex():
    return _names_regex(sorted(_WHEEL_MODELS))


def wheel_model_dir(name):
    """The cache folder rule base_model builds for wheel-shipped model ``name``."""
    return f"{_WHEEL_MODEL_CACHE.as_posix()}/{_wheel_model(name).name}"


def wheel_model_settings(wildcards):
    return _wheel_model(wildcards.base_model).canonical()


def wheel_model_input(model):
    """``[model]`` when ``model`` (e.g. train.base_model) is a folder rule base_model builds,
    so Snakemake builds it first; else nothing (a hub id, another folder or null)."""
    if model is None:
        return []
    built = {wheel_model_dir(name) for name in _WHEEL_MODELS}
    return [model] if os.path.normpath(str(model)) in built else []


# rules/refine.smk: the refinement loop's paths (a {round} wildcard), start model and inputs
def refine_dir(path):
    return result(f"refine/round{{round}}/{path}")


def refine_start_model(wildcards):
    """The model round ``round`` samples from and DPO starts from."""
    r = int(wildcards.round)
    return result("models/optimizer") if r == 1 else result(f"refine/round{r - 1}/model")


def refine_testset_inputs():
    """The active test sets' files: their questions are kept out of the pool."""
    from bpo.settings.testsets import TestsetSettings

    return [TestsetSettings.from_config(config, t).path for t in eval_testsets()]


def refine_outputs():
    """The loop's targets of `all`: every round's preference report and the last model."""
    from bpo.settings.optimize import refine_rounds

    rounds = refine_rounds(config)
    if not rounds:
        return []
    out = [result(f"refine/round{r}/preferences_report.json") for r in range(1, rounds + 1)]
    return out + [result(f"refine/round{rounds}/model")]
