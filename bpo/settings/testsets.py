"""Settings of what is read from a test set (``eval.testsets.<name>``, or the SFT-rewrite input
``eval.sft_rewrite``): the file, its layout and the sample. Every evaluation stage embeds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from bpo.settings.base import Settings, SettingsError

# The name under which the SFT-rewrite input (eval.sft_rewrite, an Alpaca file) is optimized.
SFT_REWRITE = "sft_rewrite"


def downloaded_testset_path(name: str, url: str) -> str:
    """Where rule download_testset stores a test set fetched from ``url``."""
    import os
    from urllib.parse import urlparse

    return f"data/testsets/{name}/{os.path.basename(urlparse(url).path) or 'testset.json'}"


@dataclass(frozen=True)
class TestsetSettings(Settings):
    """What is read from a test set: the file (a local path or where its url is downloaded),
    its layout and the sample."""

    name: str
    path: str
    format: str
    columns: Mapping[str, str | None]
    sample: int
    seed: int
    test_trees: float | None  # format oasst1: sources.oasst1.test_trees (which trees are held out)
    omit_none: ClassVar = ("test_trees",)  # other formats: the params are as before

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        """``eval.testsets.<name>``, or the SFT-rewrite input when ``name`` is :data:`SFT_REWRITE`."""
        ev = config["eval"]
        if name == SFT_REWRITE:
            src = ev["sft_rewrite"]
            if not src["path"]:
                raise SettingsError("config: eval.sft_rewrite.path is required when eval.sft_rewrite.activate is true")
            return cls(
                name=name,
                path=src["path"],
                format="alpaca",
                columns={},
                sample=src["sample"],
                seed=ev["sample_seed"],
                test_trees=None,
            )
        if name not in ev["testsets"]:
            raise SettingsError(f"config: eval.testsets has no test set '{name}' (defined: {sorted(ev['testsets'])})")
        ts = ev["testsets"][name]
        path = ts.get("path") or downloaded_testset_path(name, ts["url"])
        test_trees = config["sources"]["oasst1"]["test_trees"] if ts["format"] == "oasst1" else None
        return cls(
            name=name,
            path=path,
            format=ts["format"],
            columns=dict(ts["columns"]),
            sample=ts["sample"],
            seed=ev["sample_seed"],
            test_trees=test_trees,
        )
