"""Strategy specs: a registered name with parameter overrides, `NAME[:KEY=VALUE]...`.

`deepconf-online:keep=0.9:warmup=8` is online DeepConf-high with 8 warm-up traces, `majority:n=8` majority
voting over 8 samples. The keys are the fields of the strategy's params class (`DeepConfOnlineParams`), which
validates the values; the spec string names the strategy's rows in an eval, so two variants of one strategy can
run side by side.
"""

from __future__ import annotations

import ast
from dataclasses import fields

from .._errors import ValidationError

__all__ = ["parse_strategy_spec", "params_for", "strategy_params"]


def _value(text: str):
    try:
        return ast.literal_eval(text)  # numbers, None, True/False, lists
    except (ValueError, SyntaxError):
        return text  # a bare word: a string value (metric=tail)


def parse_strategy_spec(spec: str) -> tuple[str, dict]:
    """`"name:key=value:key=value"` -> (name, {key: value}); values parse as Python literals, else strings."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError(f"a strategy spec is NAME or NAME:KEY=VALUE[:KEY=VALUE...], got {spec!r}.", parameter="strategy", value=spec)
    name, *parts = spec.strip().split(":")
    params: dict = {}
    for part in parts:
        key, sep, text = part.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValidationError(f"strategy spec {spec!r}: {part!r} is not KEY=VALUE (e.g. deepconf:keep=0.9).", parameter="strategy", value=spec)
        params[key.strip()] = _value(text.strip())
    return name, params


def strategy_params(cls: type, name: str, params: dict, n: int | str | None = None):
    """The params object `build_strategy` gives strategy class `cls`: `params` (a spec's fields) at budget `n`
    (None: the params' own; a `fixed_budget` strategy, greedy, gets that whatever is asked). Needs no engine, so
    a command checks a spec before it loads a model."""
    if n is not None:
        if "n" in params:
            raise ValidationError(f"strategy {name!r}: the budget `n` is given twice ({params['n']!r} in its params, {n!r} as the budget); give it once.", parameter="n", value=n)
        params = {**params, "n": cls.fixed_budget or n}
    return params_for(cls, name, params)


def params_for(cls: type, name: str, params: dict):
    """An instance of strategy class `cls`'s params class (`cls.params_class`) with `params` as its fields; an
    unknown key is a ValidationError that lists the known ones."""
    ptype = cls.params_class
    known = [f.name for f in fields(ptype)]
    unknown = [k for k in params if k not in known]
    if unknown:
        raise ValidationError(f"strategy {name!r} has no parameter {unknown[0]!r}; its parameters are: {', '.join(known)}.", parameter=unknown[0], value=params[unknown[0]])
    return ptype(**params)
