"""The base of every stage's settings: a frozen dataclass built from a validated config section.

Defaults live only in ``bpo/resources/schema.yaml``: a settings class has none, so building one from a
section that lacks a key is an error naming the key, never a second, drifting default.
``canonical()`` is what a rule passes as its one ``params: settings=`` entry (sorted keys, lists
not tuples), so Snakemake's params-change trigger reruns exactly what an edit affects;
``from_params`` rebuilds the object in the script.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self


class SettingsError(ValueError):
    """A settings section that does not fit its class (names the config key)."""


def file_sha256(path: str, key: str) -> str:
    """Hash of a file's bytes, so an edit of its content (not a touch) reruns the stage; a
    ``builtin:<file>`` value is one of the templates that ship with the package (bpo.templates)."""
    from bpo.templates import TemplateError, resolve

    try:
        file = resolve(path)
    except TemplateError as exc:
        raise SettingsError(f"config {key}: {exc}") from exc
    if not file.is_file():
        raise SettingsError(f"config {key}: {path}: no such file")
    return hashlib.sha256(file.read_bytes()).hexdigest()


def config_section(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``config`` at the dotted ``key`` (e.g. ``eval.targets.tiny``), with an error naming it."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise SettingsError(f"config: no section {key}")
        node = node[part]
    return node


# What a target of the wrong kind is told, by the kind the caller needs.
_WRONG_KIND = {
    "endpoint": "config eval.targets.{name}: kind '{kind}' is not an LLM endpoint target",
    "hf": "config: eval.targets.{name} has kind '{kind}', not hf",
}


def target_section(config: Mapping[str, Any], name: str, kind: str) -> Mapping[str, Any]:
    """``eval.targets.<name>``, which must exist and be of ``kind`` (endpoint | hf)."""
    targets = config["eval"]["targets"]
    if name not in targets:
        raise SettingsError(f"config: eval.targets has no target '{name}' (defined: {sorted(targets)})")
    if targets[name]["kind"] != kind:
        raise SettingsError(_WRONG_KIND[kind].format(name=name, kind=targets[name]["kind"]))
    return targets[name]


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.canonical()
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _settings_class(tp: Any) -> type | None:
    """The Settings subclass inside ``tp`` (``X`` or ``X | None``), if any."""
    if isinstance(tp, type) and issubclass(tp, Settings):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if isinstance(arg, type) and issubclass(arg, Settings):
                return arg
    return None


def _settings_items(tp: Any) -> type | None:
    """The Settings subclass ``X`` of a ``tuple[X, ...]`` field, if it is one."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _settings_class(args[0])
    return None


def _frozen(value: Any) -> Any:
    # lists become tuples so a frozen settings object stays hashable and cannot be mutated
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Frozen, typed settings. Subclasses are ``@dataclass(frozen=True)`` with annotated fields and
    no defaults. A field typed as another Settings class is built from its sub-mapping, a
    ``tuple[X, ...]`` of them from a list of mappings. A field named in ``inline`` is flat in the
    canonical form (its fields sit beside the owner's, as they do in the config section). A key
    named in ``omit_none`` (own or inlined) is left out of the canonical form while None, so a
    field a stage gained later (critique's system_prompt) changes no params and reruns nothing."""

    inline: ClassVar[tuple[str, ...]] = ()
    omit_none: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "") -> Self:
        """Build from a mapping with exactly this class's fields (``where``: the config key, for errors)."""
        if not isinstance(data, Mapping):
            raise SettingsError(f"config {where or cls.__name__}: expected a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        data = {**dict.fromkeys(set(cls.omit_none) & set(names)), **data}
        for name in cls.inline:
            if name not in data:  # flat, as canonical() writes it
                sub_names = {f.name for f in dataclasses.fields(_settings_class(hints[name]))}
                data = {
                    **{k: v for k, v in data.items() if k not in sub_names},
                    name: {
                        **dict.fromkeys(set(cls.omit_none) & sub_names),
                        **{k: v for k, v in data.items() if k in sub_names},
                    },
                }
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        prefix = f"{where}." if where else ""
        if missing:
            raise SettingsError(f"config: missing key(s) {', '.join(prefix + m for m in missing)} ({cls.__name__})")
        if unknown:
            raise SettingsError(f"config: unknown key(s) {', '.join(prefix + u for u in unknown)} ({cls.__name__})")
        values = {}
        for name in names:
            value, sub = data[name], _settings_class(hints[name])
            if sub is not None and value is not None and not isinstance(value, sub):
                value = sub.from_mapping(value, prefix + name)
            item = _settings_items(hints[name])
            if item is not None:
                sub = item
                value = tuple(
                    v if isinstance(v, item) else item.from_mapping(v, f"{prefix}{name}[{i}]")
                    for i, v in enumerate(value)
                )
            values[name] = _frozen(value) if sub is None else value
        return cls(**values)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`canonical` (what a rule passed as ``params.settings``)."""
        return cls.from_mapping(params, cls.__name__)

    def canonical(self) -> dict[str, Any]:
        """Plain, key-sorted dict of every field: the rule's params entry."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = _canonical(getattr(self, f.name))
            if f.name in self.inline:
                clash = set(value) & {g.name for g in dataclasses.fields(self)}
                if clash:  # a class-design error: the flat form would lose one of them
                    raise TypeError(f"{type(self).__name__}: inlined {f.name} repeats field(s) {sorted(clash)}")
                out.update(value)
            else:
                out[f.name] = value
        return {k: out[k] for k in sorted(out) if not (k in self.omit_none and out[k] is None)}

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)
