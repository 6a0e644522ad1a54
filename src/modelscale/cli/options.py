"""Parsing of the CLI's compact option syntaxes ('1,2,4', 'seq=32,128', 'x=1,3,224,224')."""

from __future__ import annotations

from collections.abc import Sequence

from modelscale.errors import InvalidInput

__all__ = ["parse_batch_axes", "parse_int_list", "parse_named_ints", "parse_named_range"]


def parse_int_list(option: str, text: str | None, *, minimum: int = 1) -> list[int] | None:
    """'1,2,4' -> [1, 2, 4]; every value must be an integer >= ``minimum``."""
    if text is None:
        return None
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise InvalidInput(
                f"{option} must be a comma-separated list of integers >= {minimum}, e.g. 1,2,4. "
                f"Got {text!r}.",
                field=option.lstrip("-"),
            ) from None
        if value < minimum:
            raise InvalidInput(
                f"{option} values must be integers >= {minimum}. Got {value} in {text!r}.",
                field=option.lstrip("-"),
            )
        values.append(value)
    return values


def parse_named_ints(
    option: str, items: Sequence[str] | None, *, minimum: int = 1
) -> dict[str, list[int]]:
    """['seq=32,128', 'x=1,3'] -> {'seq': [32, 128], 'x': [1, 3]}."""
    out: dict[str, list[int]] = {}
    for item in items or ():
        name, sep, rest = item.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise InvalidInput(
                f"{option} expects NAME=V[,V...], e.g. {option} seq=128. Got {item!r}.",
                field=option.lstrip("-"),
            )
        values = parse_int_list(f"{option} {name}", rest, minimum=minimum)
        assert values is not None  # rest is not None here
        out[name.strip()] = values
    return out


def parse_named_range(option: str, items: Sequence[str] | None) -> dict[str, tuple[int, int]]:
    """['input_ids=0,30521'] -> {'input_ids': (0, 30521)} (inclusive)."""
    out: dict[str, tuple[int, int]] = {}
    for name, values in parse_named_ints(option, items, minimum=-(2**63)).items():
        if len(values) != 2:
            raise InvalidInput(
                f"{option} expects NAME=LOW,HIGH (inclusive), e.g. {option} input_ids=0,30521. "
                f"Got {name}={','.join(map(str, values))}.",
                field=option.lstrip("-"),
            )
        out[name] = (values[0], values[1])
    return out


def parse_batch_axes(option: str, items: Sequence[str] | None) -> dict[str, int | None]:
    """['state=1', 'sr=none'] -> {'state': 1, 'sr': None}: an axis >= 0, or none for no batch axis."""
    out: dict[str, int | None] = {}
    for item in items or ():
        name, _, rest = item.partition("=")
        value = rest.strip().lower()
        if not name.strip() or not (value == "none" or value.isdigit()):
            raise InvalidInput(
                f"{option} expects INPUT=AXIS (an axis number >= 0, or none for an input that is "
                f"not batched), e.g. {option} state=1. Got {item!r}.",
                field=option.lstrip("-"),
            )
        out[name.strip()] = None if value == "none" else int(value)
    return out
