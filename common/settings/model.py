"""How a setting is declared once and read from anywhere: a field of a msgspec Struct.

A section's settings (``[recorder]``, ``camwire recorder``'s flags) are one Struct class; each
field is one setting, written once with its type, its default and its metadata (:func:`opt`):
the help text, how text becomes a value (``parse``: common.units' durations and sizes, a port,
a polygon), its metavar, and whether it repeats. From that one declaration come:

- the daemon's flags (:func:`add_flags`: ``retain`` is ``--retain DURATION``, its help and default),
- the values of its section in camwire.toml (:func:`from_file`: each through the same ``parse``,
  a key with no field refused), and
- the typed object the daemon runs with (:func:`build`: msgspec validates the whole, so a
  daemon never sees a value of the wrong type).

Flags override the file, the file overrides the defaults. A section is made of groups
(:func:`section`) so that what two sections share is declared once. :class:`Settings`' own four
fields are not settings but what the CLI hands the command with them (the loaded file, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from camwire.common.logs import redact_url


class Group(msgspec.Struct, kw_only=True):
    """A group of settings, declared once: a section is made of groups (:func:`section`), so
    what two sections share (recording options, CURVE keys) is written once."""


class Settings(msgspec.Struct, kw_only=True):
    """The base of every section's settings: what the CLI hands a command besides its settings
    (not flags, not file keys): the loaded camwire.toml (common.config.Config), the settings given
    on the command line itself (they win over a reloaded file), the command's name, and the
    loader a reload judges the file with (the CLI's, which judges what this command reads)."""

    config: Any = None
    given: frozenset[str] = frozenset()
    command: str = ""
    config_loader: Any = None

    def __repr__(self) -> str:
        """The settings as safe to log: not the loaded file (camera URLs with their passwords),
        secret settings masked, a password in any URL masked."""
        shown = ", ".join(f"{f.name}={shown_value(f, getattr(self, f.name))!r}" for f in settings_of(type(self)))
        return f"{type(self).__name__}({shown})"


MASK = "***"


def shown_value(f: Field, value: Any) -> Any:
    """``value`` of setting ``f`` as safe to print: a secret one masked (a KEY=VALUE's value), a
    URL's password masked (common.logs.redact_url)."""
    if value is None:
        return None
    if f.opt is not None and f.opt.secret:
        if isinstance(value, list):
            return [(v[0], MASK) if isinstance(v, tuple) else MASK for v in value]
        return MASK
    return _redacted(value)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redacted(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class Opt:
    """A setting's metadata (msgspec keeps it in ``Meta.extra``)."""

    help: str
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # text (a flag, or a file value written as text) -> value
    repeat: bool = False  # a flag given again adds a value; in the file, a list (or one value)
    required: bool = False  # as a flag, unless the file gives it
    choices: tuple[Any, ...] | None = None
    flag: str | None = None  # its flag, when not --name-with-dashes
    group: str | None = None  # a heading in --help
    exclusive: str | None = None  # flags of one name here exclude each other
    cli: bool = True  # a flag of the command
    file: bool = True  # a key of the command's section in camwire.toml
    once: str | None = None  # a flag given once: why a second one is refused
    deprecated: bool = False  # accepted (file and flag) with a warning, and not in --help
    secret: bool = False  # never printed (check-config, logs)
    shown: str | None = None  # the default as --help writes it, when not as the value reads


def opt(help: str, **kw: Any) -> msgspec.Meta:
    """The metadata of one setting: ``Annotated[float, opt("delete files older than this",
    parse=duration, metavar="DURATION")] = 604800.0``."""
    return msgspec.Meta(description=help, extra={"opt": Opt(help, **kw)})


def section(name: str, *groups: type[Group], optional: tuple[str, ...] = ()) -> type[Settings]:
    """The settings of one section: ``groups``' fields in order, on :class:`Settings`.
    ``optional``: settings the groups declare required that this section does not need."""
    hints: dict[str, Any] = {}
    for group in groups:
        for key, hint in typing.get_type_hints(group, include_extras=True).items():
            assert key not in hints, f"{name}: {key} declared twice"
            hints[key] = hint
    specs = []
    for group in groups:
        for f in msgspec.structs.fields(group):
            hint = hints[f.name]
            if f.name in optional:
                kind, *extras = typing.get_args(hint)
                extras = [msgspec.Meta(description=m.description, extra={"opt": dataclasses.replace(
                    m.extra["opt"], required=False)}) for m in extras]
                hint = typing.Annotated[(kind, *extras)]
            default = f.default if f.default_factory is msgspec.NODEFAULT else msgspec.field(
                default_factory=f.default_factory)
            specs.append((f.name, hint, default))
    cls = msgspec.defstruct(name, specs, bases=(Settings,), kw_only=True, module="camwire.common.settings")
    cls.__doc__ = f"The {name.removesuffix('Settings').lower()} section: " + ", ".join(g.__name__ for g in groups)
    return cls


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Any  # the type without Annotated
    default: Any
    opt: Opt | None

    @property
    def flag(self) -> str:
        return (self.opt.flag if self.opt and self.opt.flag else "--" + self.name.replace("_", "-"))


_FIELDS: dict[type, list[Field]] = {}


def fields(cls: type[Settings]) -> list[Field]:
    """``cls``'s settings in declaration order, with their metadata."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls, include_extras=True)
        out = []
        for f in msgspec.structs.fields(cls):
            hint = hints[f.name]
            meta = None
            if typing.get_origin(hint) is typing.Annotated:
                kind, *extras = typing.get_args(hint)
                meta = next((m.extra["opt"] for m in extras if isinstance(m, msgspec.Meta) and m.extra
                             and "opt" in m.extra), None)
            else:
                kind = hint
            default = (f.default_factory() if f.default_factory is not msgspec.NODEFAULT
                       else None if f.default is msgspec.NODEFAULT else f.default)
            out.append(Field(f.name, kind, default, meta))
        _FIELDS[cls] = out
    return _FIELDS[cls]


def settings_of(cls: type[Settings], *, cli: bool | None = None, file: bool | None = None) -> list[Field]:
    """The fields that are settings (have metadata), those that are flags or file keys if asked."""
    return [f for f in fields(cls) if f.opt is not None and (cli is None or f.opt.cli == cli)
            and (file is None or f.opt.file == file)]


def _base(kind: Any) -> Any:
    """``int | None`` -> ``int``; ``list[str] | None`` -> ``list[str]``."""
    args = [a for a in typing.get_args(kind) if a is not type(None)] if typing.get_origin(kind) in (
        typing.Union, types.UnionType) else [kind]
    return args[0] if len(args) == 1 else kind


def _parser_of(f: Field) -> Callable[[str], Any] | None:
    if f.opt is not None and f.opt.parse is not None:
        return f.opt.parse
    base = _base(f.kind)
    if f.opt is not None and f.opt.repeat:
        base = _base(typing.get_args(base)[0] if typing.get_args(base) else str)
    return base if base in (int, float) else None


# -- flags -------------------------------------------------------------------------------------

def add_flags(parser: argparse.ArgumentParser, cls: type[Settings]) -> None:
    """``cls``'s settings as flags of ``parser``, in declaration order."""
    groups: dict[str, Any] = {}
    exclusive: dict[str, Any] = {}
    for f in settings_of(cls, cli=True):
        o = f.opt
        assert o is not None
        target: Any = parser
        if o.group:
            if o.group not in groups:
                groups[o.group] = parser.add_argument_group(o.group)
            target = groups[o.group]
        if o.exclusive:
            if o.exclusive not in exclusive:
                exclusive[o.exclusive] = target.add_mutually_exclusive_group()
            target = exclusive[o.exclusive]
        kw: dict[str, Any] = {"help": o.help.replace("%", "%%")}
        if _base(f.kind) is bool:
            kw["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
            kw["default"] = bool(f.default)
        else:
            kw.update(default=f.default, metavar=o.metavar, required=o.required)
            if (parse := _parser_of(f)) is not None:
                kw["type"] = parse
            if o.repeat:
                kw["action"] = "append"
                kw["default"] = None
            if o.choices is not None:
                kw["choices"] = o.choices
        if o.once:
            kw["action"] = _Once
        if o.deprecated:
            kw["help"] = argparse.SUPPRESS
        elif o.shown:
            kw["help"] += f" (default: {o.shown})".replace("%", "%%")
        target.add_argument(f.flag, dest=f.name, **kw)


class _Once(argparse.Action):
    """A flag meant to be given once: every value is kept (``_<name>_given``), so that a second
    one is refused with both (camwire.cli), rather than the last silently taken."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = f"_{self.dest}_given"
        setattr(namespace, given, [*(getattr(namespace, given, None) or []), values])
        setattr(namespace, self.dest, values)


def deprecated(settings: Settings) -> list[str]:
    """What to tell of each deprecated setting that is set (a flag or the file): one line each."""
    section = settings.command or "its section"
    return [f"{f.name} does nothing: remove it ({f.flag}, [{section}] {f.name}); a later release refuses it"
            for f in settings_of(type(settings)) if f.opt.deprecated  # type: ignore[union-attr]
            and getattr(settings, f.name) != f.default]


# -- the file ----------------------------------------------------------------------------------

def from_file(cls: type[Settings], table: dict[str, Any], command: str) -> dict[str, tuple[str, Any]]:
    """The section's keys as values of ``cls``'s settings, each through the setting's own parse
    and choices: ``{name: (key as written, value)}``. Raises KeyError(key) for a key with no
    setting and ValueError(key, reason) for a value refused."""
    known = {f.name: f for f in settings_of(cls, file=True)}
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        f = known.get(name)
        if f is None:
            raise KeyError(key)
        try:
            out[name] = (key, convert(f, value))
        except ValueError as exc:
            raise ValueError(key, str(exc)) from None
    return out


def convert(f: Field, value: Any) -> Any:
    """A file's ``value`` for setting ``f``, as its flag would have it. ValueError: the reason."""
    o = f.opt
    assert o is not None
    if _base(f.kind) is bool:
        if not isinstance(value, bool):
            raise ValueError(f"true or false, not {value!r}")
        return value
    if o.repeat:
        return [_one(f, v) for v in (value if isinstance(value, list) else [value])]
    return _one(f, value)


def _one(f: Field, value: Any) -> Any:
    o = f.opt
    assert o is not None
    if isinstance(value, (bool, list, dict)):
        raise ValueError(f"one value as on the command line, not {value!r}")
    text = value if isinstance(value, str) else str(value)
    converted: Any = text
    if (parse := _parser_of(f)) is not None:
        try:
            converted = parse(text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
        except (TypeError, ValueError):
            raise ValueError(f"invalid {getattr(parse, '__name__', 'value')} value: {value!r}") from None
    if o.choices is not None and converted not in o.choices:
        raise ValueError(f"one of {', '.join(map(str, o.choices))}, not {value!r}")
    return converted


# -- the object the daemon gets ----------------------------------------------------------------

def defaults(cls: type[Settings]) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls)}


def build(cls: type[Settings], values: dict[str, Any]) -> Settings:
    """The typed settings of ``values`` (defaults for the rest), validated whole by msgspec.
    ValueError names the flag of a value of the wrong type."""
    names = {f.name for f in fields(cls)}
    try:
        return msgspec.convert({**defaults(cls), **{k: v for k, v in values.items() if k in names}}, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        name = m.group(1) if (m := re.search(r"\$\.(\w+)", text)) else ""
        flag = next((f.flag for f in fields(cls) if f.name == name), name)
        raise ValueError(f"{flag}: {text.partition(' - at ')[0]}") from None


def as_dict(settings: Settings) -> dict[str, Any]:
    """The settings (not what the CLI hands over) by name."""
    return {f.name: getattr(settings, f.name) for f in settings_of(type(settings))}


def to_argv(settings: Settings, group: type[Group], only: Callable[[str], bool] | None = None) -> list[str]:
    """``group``'s settings of ``settings`` as the command-line words that give them (what
    ``camwire run`` hands a child): ``--flag value`` for each one set (and ``only(name)``, when
    given), a repeated one repeated, a true boolean its flag alone."""
    words: list[str] = []
    for f in settings_of(group, cli=True):
        value = getattr(settings, f.name)
        if value is None or value is False or (only is not None and not only(f.name)):
            continue
        if value is True:
            words.append(f.flag)
        else:
            words += [w for v in (value if f.opt.repeat else [value]) for w in (f.flag, str(v))]  # type: ignore[union-attr]
    return words
