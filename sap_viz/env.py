"""The one reader of environment variables: typed, with one true/false rule, failing loudly on a bad value.

Why one reader: each module used to parse its own variable, with four different true/false rules and some silently
falling back on a bad value (``SAP_VIZ_EXAMPLE_WAIT_S=3m`` waited the default 180 s). Here an unset or empty variable
gives the default, and anything else must parse or raises :class:`~sap_viz.errors.SettingsError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from sap_viz.errors import SettingsError, UserError

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def _raw(name: str, environ: Mapping[str, str] | None) -> str:
    return (os.environ if environ is None else environ).get(name, "").strip()


def env_str(name: str, default: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """Text (surrounding spaces dropped); ``default`` when unset or empty."""
    return _raw(name, environ) or default


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); ``default`` when unset or empty."""
    raw = _raw(name, environ).lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise SettingsError(f"{name} must be one of {', '.join(TRUE)} or {', '.join(FALSE)}, got {raw!r}", param=name)


def env_int(name: str, default: int | None, environ: Mapping[str, str] | None = None, minimum: int | None = None,
            error: type[UserError] = SettingsError) -> int | None:
    """An integer (``_`` allowed as a digit separator), at least ``minimum`` when given; ``default`` when unset."""
    raw = _raw(name, environ)
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise error(f"{name} must be an integer, got {raw!r}", param=name) from None
    if minimum is not None and value < minimum:
        raise error(f"{name} must be an integer of at least {minimum}, got {value}", param=name)
    return value


def env_float(name: str, default: float, environ: Mapping[str, str] | None = None, minimum: float | None = None) -> float:
    """A finite number, at least ``minimum`` when given; ``default`` when unset or empty."""
    raw = _raw(name, environ)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}", param=name) from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" of at least {minimum:g}" if minimum is not None else ""
        raise SettingsError(f"{name} must be a finite number{bound}, got {raw!r}", param=name)
    return value


def env_path(name: str, default: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """A path (``~`` expanded); ``default`` when unset or empty."""
    raw = _raw(name, environ)
    return Path(raw).expanduser() if raw else default
