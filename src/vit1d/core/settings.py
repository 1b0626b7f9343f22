"""Settings files, strictly read: one validator for every YAML the project reads.

A settings object is a dataclass (nested dataclasses are sections); :func:`merge_settings`
applies a nested mapping onto it, key by key. An unknown key, a section that is no mapping
or a value of the wrong type raises :class:`vit1d.core.errors.UserError` naming the key, the
file it came from and how to write the value. Values are converted where YAML and the
command line cannot say the type: an int where a float is expected, a list where a tuple is
expected, ``1e-3`` (a string in YAML 1.1) for a float, and an empty value or YAML null for
a text key, which is the empty string (text keys use it for "none").

The training presets (:mod:`vit1d.pretrain.config`) and the pipeline presets
(:mod:`vit1d.core.presets`) are read with it.
"""

from __future__ import annotations

import difflib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from vit1d.core.errors import UserError

#: The source name of ``section.key=value`` overrides (``--set``) in error messages.
OVERRIDES = "the overrides"
_KINDS = {bool: "true or false", int: "an int", float: "a number", str: "text"}
_REFUSED = object()


def _items(hint: Any, n: int) -> list[Any] | None:
    """The item types of a list or tuple hint for ``n`` values (``None``: not a sequence)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is list:
        return [args[0]] * n
    if origin is tuple:
        return [args[0]] * n if len(args) == 2 and args[1] is Ellipsis else list(args)
    return None


def _kind(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} values ({', '.join(_kind(a) for a in args)})"
        item = args[0]
        return f"a list of {'numbers' if item is float else item.__name__ + 's'}"
    if origin is dict or hint is dict:
        return "a mapping"
    return _KINDS.get(hint, getattr(hint, "__name__", str(hint)))


def _as_text(value: Any) -> str:
    """``value`` as one would type it after ``=`` (no spaces, so the shell keeps it whole)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_as_text(v) for v in value) + "]"
    if isinstance(value, str):
        return value or "<text>"
    return str(value)


def _how_to_write(where: str, example: Any, source: str) -> str:
    """How to write ``where`` correctly, with ``example`` (its value before the bad one)."""
    none = example == ""
    if source == OVERRIDES:
        return f"e.g. --set {where}={_as_text(example)}" + (
            f" (--set {where}= for none)" if none else ""
        )
    section, _, leaf = where.rpartition(".")
    under = f" under '{section}:'" if section else ""
    return f"e.g. '{leaf}: {_as_text(example)}'{under}" + (
        f" ('{leaf}: \"\"' for none)" if none else ""
    )


def check_value(value: Any, hint: Any, where: str, source: str, example: Any) -> Any:
    """Return ``value`` converted to the type ``hint`` or raise a UserError that shows how to
    write it (``example``: the key's value before this one)."""
    if hint is dict or get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise UserError(
                f"config key '{where}' in {source} expects a mapping, got {value!r}; write it "
                f"as 'key: value' lines indented under '{where.rpartition('.')[2]}:'"
            )
        return dict(value)
    items = _items(hint, len(value) if isinstance(value, (list, tuple)) else 0)
    if items is not None:
        if not isinstance(value, (list, tuple)) or len(items) != len(value):
            raise UserError(
                f"config key '{where}' in {source} expects {_kind(hint)}, got {value!r}; "
                f"write it as [a,b,...], {_how_to_write(where, example, source)}"
            )
        out = []
        for i, (v, item) in enumerate(zip(value, items, strict=True)):
            checked = _checked_scalar(v, item)
            if checked is _REFUSED:
                raise UserError(
                    f"config key '{where}' in {source} expects {_kind(hint)}, got {v!r} "
                    f"({type(v).__name__}) at position {i}; fix the value, "
                    f"{_how_to_write(where, example, source)}"
                )
            out.append(checked)
        return tuple(out) if get_origin(hint) is tuple else out
    checked = _checked_scalar(value, hint)
    if checked is _REFUSED:
        empty = " (an empty value is the empty string, which only text keys take)"
        raise UserError(
            f"config key '{where}' in {source} expects {_kind(hint)}, got {value!r} "
            f"({type(value).__name__}){empty if value == '' else ''}; fix the value, "
            f"{_how_to_write(where, example, source)}"
        )
    return checked


def _checked_scalar(value: Any, hint: Any) -> Any:
    """``value`` as a ``hint`` (bool, int, float or str), or ``_REFUSED``."""
    if hint is str and value is None:
        # YAML reads `key:` with nothing after it (and `--set key=~`) as null; for a text key
        # that means "none", which text keys spell "" (data.group_by "" = no hard negatives)
        return ""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            return float(value)
        except ValueError:
            return _REFUSED
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        return _REFUSED
    return value


def merge_settings(obj: Any, updates: dict[str, Any], prefix: str, source: str) -> None:
    """Apply a nested dict of updates onto a dataclass instance, validating keys and types.

    ``prefix`` is the dotted path of ``obj`` in the file (``"model."``, or ``""`` at the top)
    and ``source`` names the file or :data:`OVERRIDES`; both go into the error messages."""
    if not isinstance(updates, dict):
        raise UserError(
            f"config section '{prefix.rstrip('.') or 'top level'}' in {source} must be a "
            f"mapping, got {updates!r}; write it as 'key: value' lines indented under it"
        )
    hints = get_type_hints(type(obj))
    names = [f.name for f in fields(obj)]
    for key, value in updates.items():
        where = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
            raise UserError(
                f"unknown config key '{where}' in {source}; {hint}"
                f"valid keys here: {', '.join(names)}"
            )
        current = getattr(obj, key)
        if is_dataclass(current):
            merge_settings(current, value, f"{where}.", source)
        else:
            setattr(obj, key, check_value(value, hints[key], where, source, current))


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as a dict (empty file: ``{}``); a syntax error says how to fix it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise UserError(
            f"cannot parse config file {path} as YAML: {exc}; fix the syntax at the line it "
            "names (indent with spaces, one 'key: value' per line, lists as [a, b])"
        ) from None
    return data or {}
