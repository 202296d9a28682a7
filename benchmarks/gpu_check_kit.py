"""``make device-kit``: a wheelhouse for an offline GPU machine whose image already has CUDA torch.

It holds exactly what this project needs there and the image lacks: the closure of the project's
dependencies (pyproject) at requirements.lock's versions, walked from the installed metadata
(markers evaluated for Python 3.12 on Linux x86_64) and cut at every package the image has
(``gpu_image_packages.txt``), plus the few libraries the code calls deeply whose image version is
older than the lock's (UPGRADES), plus this project's own wheel. DeepSpeed is a source package:
it is built here into a wheel with ``DS_BUILD_OPS=0`` (no CUDA op compiled; DeepSpeed JIT-builds
an op on the GPU machine the first time one is used, with the image's nvcc and ninja).

    python benchmarks/gpu_check_kit.py [--out kit] [--dry]

Prints the wheels, the total size and the one-line install.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
IMAGE_LIST = Path(__file__).with_name("gpu_image_packages.txt")
# The image's transformers 5.17 / tokenizers 0.23.2 / huggingface-hub 1.33 are older than the lock's,
# and the training, generation and packing code is tested with the lock's: these travel too.
UPGRADES = ("transformers", "tokenizers", "huggingface-hub", "peft")
# Not for the GPU check and not in the image's way: never in the kit.
NEVER = ("torch",)
SOURCE_ONLY = ("deepspeed",)  # no wheel on PyPI: built here
PY = "3.12"
TARGET_ENV = {
    "python_version": PY,
    "python_full_version": f"{PY}.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)
INSTALL = "python3 -m pip install --no-index --no-deps --find-links {out} {out}/*.whl"


def image_packages(path: Path = IMAGE_LIST) -> set[str]:
    names = [w.strip() for line in path.read_text().splitlines() if not line.startswith("#") for w in line.split(",")]
    return {canonicalize_name(n) for n in names if n}


def lock_pins(path: Path = REPO / "requirements.lock") -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", path.read_text(), re.M)}


def kit_packages(image: set[str], pins: dict[str, str]) -> dict[str, str]:
    """name -> locked version of every package the kit must hold (the project's wheel aside)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [Requirement(d) for d in deps] + [Requirement(u) for u in UPGRADES]
    upgrades = {canonicalize_name(u) for u in UPGRADES}
    kit: dict[str, str] = {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in kit or name in NEVER or (name in image and name not in upgrades):
            continue
        if req.marker is not None and not req.marker.evaluate(TARGET_ENV):
            continue
        if name not in pins:
            raise SystemExit(f"device-kit: {name} (needed via {req}) is not in requirements.lock: run `make lock`")
        kit[name] = pins[name]
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            raise SystemExit(
                f"device-kit: {name} is not installed here (its dependencies are read from it): run `make setup`"
            ) from None
        todo += [Requirement(r) for r in requires]
    return dict(sorted(kit.items()))


def supported_on_target(wheel_name: str) -> bool:
    """Whether a wheel installs on CPython 3.12, Linux x86_64 (the GPU image)."""
    from packaging import tags
    from packaging.utils import parse_wheel_filename

    target = set(tags.cpython_tags((3, 12), platforms=PLATFORMS)) | set(
        tags.compatible_tags((3, 12), "cp312", platforms=PLATFORMS)
    )
    return bool(parse_wheel_filename(wheel_name)[3] & target)


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def build(out: Path, kit: dict[str, str]) -> list[str]:
    """Download the wheels into ``out``; a package PyPI has as a source archive only is built here
    into a wheel (``pip wheel --no-deps``; DeepSpeed with DS_BUILD_OPS=0 against this machine's
    torch, which its setup imports). Returns the names built from source."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    from_source = [n for n in SOURCE_ONLY if n in kit]
    while True:
        binary = [f"{n}=={v}" for n, v in kit.items() if n not in from_source]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                PY,
                "--implementation",
                "cp",
                *platforms,
                "--dest",
                str(out),
                *binary,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            break
        missing = re.search(r"No matching distribution found for ([A-Za-z0-9._-]+)==", proc.stderr)
        if not missing or canonicalize_name(missing[1]) in from_source:
            sys.stderr.write(proc.stderr)
            raise SystemExit("device-kit: pip download failed")
        from_source.append(canonicalize_name(missing[1]))  # no wheel for any platform: build one
    for name in from_source:
        ds = name == "deepspeed"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                *(["--no-build-isolation"] if ds else []),
                "--wheel-dir",
                str(out),
                f"{name}=={kit[name]}",
            ],
            env={**os.environ, **({"DS_BUILD_OPS": "0"} if ds else {})},
        )
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(REPO),
        ]
    )
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools' scratch folder
    return from_source


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "kit"))
    ap.add_argument("--dry", action="store_true", help="list the packages, download nothing")
    ns = ap.parse_args(argv)
    kit = kit_packages(image_packages(), lock_pins())
    print(
        f"device-kit: {len(kit)} packages + bpo-workflow (the image has the rest; {', '.join(UPGRADES)} "
        "at the lock's newer versions)"
    )
    print("  " + " ".join(f"{n}=={v}" for n, v in kit.items()))
    if ns.dry:
        return 0
    out = Path(ns.out)
    built = build(out, kit)
    wheels = sorted(out.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    for w in wheels:
        print(f"  {w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    print(
        f"device-kit: {len(wheels)} wheels, {size / 2**20:.1f} MiB in {out}; built here from source: {', '.join(built)}"
    )
    bad = [w.name for w in wheels if not supported_on_target(w.name)]
    if bad:
        raise SystemExit(f"device-kit: wheels that will not install on CPython 3.12 x86_64: {bad}")
    print("install on the GPU machine (from the repository root, no network; --no-deps: the image's torch stays):")
    print("  " + INSTALL.format(out=os.path.relpath(out, Path.cwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
