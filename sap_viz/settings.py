"""Settings shared by the core, the CLI and the app: where things live, and the resource limits.

Paths: what ships is read from the installed package (``importlib.resources``), never from a checkout,
so a wheel works wherever it is installed; everything written at run time goes under one data folder,
``SAP_VIZ_HOME`` (default: the platform's user data folder), so an install can stay read-only.

Resource limits of the app and its API are read once from ``SAP_VIZ_MAX_*`` environment variables.

A public Space serves strangers on two vCPUs, so every input a user controls has a ceiling: prompt
and answer length, upload size, training-set size and model size, how many texts one call may
score. The defaults fit a 2-vCPU / 16 GB Space running SmolLM2-135M; a bad value in the
environment stops the app at start with a message naming the variable, rather than at the first
request.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib.resources import files
from pathlib import Path

from sap_viz.env import env_bool, env_int, env_path
from sap_viz.errors import LimitsError

ENV_PREFIX = "SAP_VIZ_"

HOME_ENV = ENV_PREFIX + "HOME"


def packaged_path(*parts: str) -> Path:
    """A file or folder shipped inside the package, as a path on disk (pip always unpacks a wheel)."""
    return Path(str(files("sap_viz").joinpath(*parts)))


#: The read-only polytopes that ship inside the package, and the one every entry point starts with.
SHIPPED_POLYTOPES = packaged_path("polytopes")
DEFAULT_POLYTOPE = SHIPPED_POLYTOPES / "smollm2-135m-default"


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` lies inside the package's shipped polytopes (read-only: never written, only copied)."""
    return Path(path).resolve().is_relative_to(SHIPPED_POLYTOPES.resolve())


def user_data_dir(environ: Mapping[str, str] | None = None, platform: str = sys.platform) -> Path:
    """The platform's folder for an application's data (what ``platformdirs.user_data_dir`` gives, without the dependency)."""
    home = env_path("HOME", environ=environ) or Path.home()
    if platform == "win32":
        return env_path("LOCALAPPDATA", environ=environ) or home / "AppData" / "Local"
    if platform == "darwin":
        return home / "Library" / "Application Support"
    return env_path("XDG_DATA_HOME", environ=environ) or home / ".local" / "share"


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    """The one folder sap-viz writes into at run time: owner polytopes and labels, proposals, caches, lock files.

    ``SAP_VIZ_HOME`` sets it (on a Hugging Face Space with persistent storage: ``/data/sap-viz``); by default it is
    ``sap-viz`` in the platform's user data folder. Created by whoever writes first.
    """
    return env_path(HOME_ENV, environ=environ) or user_data_dir(environ) / "sap-viz"


# (lowest, highest) value each limit may be set to
_RANGES = {
    "max_prompt_tokens": (16, 32_768),
    "max_new_tokens": (1, 4_096),
    "max_text_chars": (100, 10_000_000),
    "max_score_texts": (1, 100_000),
    "max_upload_mb": (1, 65_536),
    "max_train_rows": (10, 10_000_000),
    "max_facets": (1, 4_096),
    "max_feature_dim": (16, 1 << 20),
    "max_epochs": (1, 100_000),
    "max_cache_mb": (16, 100_000_000),
    "max_sessions": (1, 1_000_000),
    "session_ttl_s": (60, 30 * 86_400),
    "max_session_polytopes": (1, 1_000),
    "max_session_mb": (1, 1_000_000),
    "max_sessions_mb": (1, 10_000_000),
    "max_map_views": (1, 1_000),
    "max_session_map_views": (1, 100),
    "max_proposals": (1, 100_000),
}


@dataclass(frozen=True)
class Limits:
    max_prompt_tokens: int = 512  # tokens of a formatted prompt; longer user text is cut, with a notice
    max_new_tokens: int = 200  # per generation request
    max_text_chars: int = 50_000  # any single text (prompt, scored text); longer is refused
    max_score_texts: int = 256  # texts per /score call
    max_upload_mb: int = 64  # one uploaded file (polytope files, zips, training data)
    max_train_rows: int = 20_000  # rows of a training table
    max_facets: int = 64  # K when training in the app
    max_feature_dim: int = 16_384  # F when training in the app
    max_epochs: int = 200  # epochs when training in the app
    max_cache_mb: int = 2_048  # feature cache on disk; least recently used entries go beyond it
    max_sessions: int = 500  # visitor sessions kept; the least recently used one ends beyond it
    session_ttl_s: int = 7_200  # a visitor session unused this long ends (its polytopes and views are deleted)
    max_session_polytopes: int = 4  # polytopes one visitor may upload or train; the least recently used goes beyond it
    max_session_mb: int = 128  # disk for one visitor's polytopes
    max_sessions_mb: int = 1_024  # disk for all visitors' polytopes together; least recently used go beyond it
    max_map_views: int = 4  # feature-map views kept in memory; the least recently used goes beyond it
    max_session_map_views: int = 1  # of those, views of one visitor's own polytopes
    max_proposals: int = 200  # open label proposals per polytope; the oldest goes beyond it

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = _RANGES[f.name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise LimitsError(f"{env_name(f.name)} must be an integer between {low} and {high}, got {value!r}")

    @property
    def max_session_bytes(self) -> int:
        return self.max_session_mb << 20

    @property
    def max_sessions_bytes(self) -> int:
        return self.max_sessions_mb << 20

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb << 20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Defaults overridden by ``SAP_VIZ_MAX_PROMPT_TOKENS`` etc.; raises LimitsError on a bad value."""
        values = {f.name: env_int(env_name(f.name), None, environ, error=LimitsError) for f in fields(cls)}
        return cls(**{name: value for name, value in values.items() if value is not None})

    def describe(self) -> list[dict]:
        """One row per limit (environment variable, value, default) for docs and the API."""
        defaults = default_values()
        return [{"env": env_name(f.name), "value": getattr(self, f.name), "default": defaults[f.name]} for f in fields(self)]


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def default_values() -> dict[str, int]:
    return {f.name: f.default for f in fields(Limits)}  # type: ignore[misc]


_current: Limits | None = None


def get_limits() -> Limits:
    """The process's limits, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Limits.from_env()
    return _current


KEEP_PROMPTS_ENV = ENV_PREFIX + "KEEP_PROMPTS"


def keep_prompts(env: Mapping[str, str] | None = None) -> bool:
    """Whether the deployment counters keep each request's prompt text (``SAP_VIZ_KEEP_PROMPTS=1``).

    Off by default: on a public Space the operator, not the visitor, decides to keep what people type.
    """
    return env_bool(KEEP_PROMPTS_ENV, False, env)
