"""Polytopes on the Hugging Face Hub: ``--polytope owner/name`` downloads one, ``sap-viz push`` uploads one.

A downloaded polytope is untrusted like any uploaded file: only the files an export holds are fetched
(never a pickle, whatever the repo holds), their sizes are checked against the same caps as a local
load before anything is downloaded, and the folder then goes through the same ``load_polytope``
checks. Offline (``HF_HUB_OFFLINE=1`` or no network) a polytope already in the Hub cache loads from
there; otherwise the message says what to do instead of a stack of HTTP errors.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from sap_viz import __version__
from sap_viz.errors import HubError
from sap_viz.hub.export import CARD_FILE, EXPORT_FILES, check_export
from sap_viz.method.artifact import META_FILE, PolytopeFileError
from sap_viz.method.safe_files import MAX_JSON_BYTES, MAX_TENSOR_BYTES

HUB_PREFIX = "hf://"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$")
MAX_CARD_BYTES = 1 << 20


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def parse_hub_ref(ref: str) -> tuple[str, str | None] | None:
    """``owner/name`` or ``hf://owner/name``, optionally ``@revision``, as (repo id, revision); None when it is not one."""
    text = str(ref).strip()
    explicit = text.startswith(HUB_PREFIX)
    text = text.removeprefix(HUB_PREFIX)
    repo, _, revision = text.partition("@")
    if not _REPO_ID.match(repo) or ".." in repo or (revision and not re.fullmatch(r"[A-Za-z0-9._/-]{1,128}", revision)):
        if explicit:
            raise HubError(f"{ref!r} is not a Hub repo id (expected hf://owner/name or hf://owner/name@revision)")
        return None
    return repo, revision or None


def resolve_polytope(ref: str | Path) -> Path:
    """The local folder of ``ref``: a folder on disk as it is, a Hub repo id downloaded (or taken from the Hub cache)."""
    text = str(ref)
    path = Path(ref)
    if not text.startswith(HUB_PREFIX) and path.exists():
        return path
    parsed = parse_hub_ref(text)
    if parsed is None:
        raise PolytopeFileError(f"{ref} is not a polytope directory (nor a Hub repo id such as owner/name)")
    return download_polytope(*parsed)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cap(name: str) -> int:
    if name.endswith(".safetensors"):
        return MAX_TENSOR_BYTES
    return MAX_CARD_BYTES if name == CARD_FILE else MAX_JSON_BYTES


def _check_sizes(infos: list) -> None:
    names = {info.filename for info in infos}
    if META_FILE not in names:
        raise HubError(f"the repo holds no {META_FILE}: it is not a sap-viz polytope")
    for info in infos:
        if info.file_size is not None and info.file_size > _cap(info.filename):
            raise HubError(f"{info.filename} in the repo is {info.file_size >> 20} MiB, more than sap-viz loads "
                           f"({_cap(info.filename) >> 20} MiB); refused before downloading")


def download_polytope(repo_id: str, revision: str | None = None) -> Path:
    """Fetch a polytope repo's export files into the Hub cache and return their folder (not yet validated)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        DryRunError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision}" if revision else repo_id
    kwargs = dict(revision=revision, allow_patterns=list(EXPORT_FILES), library_name="sap-viz", library_version=__version__)
    unreachable: BaseException | None = None
    try:
        infos = None
        if not _offline():
            try:
                infos = snapshot_download(repo_id, dry_run=True, **kwargs)
            except (LocalEntryNotFoundError, OfflineModeIsEnabled, DryRunError) as exc:
                unreachable = exc  # no network (or no access): the Hub cache may still hold it
        if infos is None:
            folder = snapshot_download(repo_id, local_files_only=True, **kwargs)
        else:
            _check_sizes(list(infos))
            folder = snapshot_download(repo_id, **kwargs)
    except HubError:
        raise
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        reason = ("HF_HUB_OFFLINE=1 is set" if _offline() else
                  f"the Hub cannot be reached (no network?) or the repo is private or missing ({_first_line(unreachable or Exception())})")
        raise HubError(f"cannot download polytope {where!r}: {reason}, and it is not in the Hub cache ({constants.HF_HUB_CACHE}). "
                       "Download it once where there is network (it is cached then), or pass a local polytope folder") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise HubError(f"no polytope repo {repo_id!r} on the Hub, or it is private or gated: check the id, or log in "
                       "(HF_TOKEN or `hf auth login`) with access to it") from None
    except RevisionNotFoundError:
        raise HubError(f"the repo {repo_id!r} has no revision {revision!r}") from None
    except HfHubHTTPError as exc:
        raise HubError(f"the Hub refused the download of {where!r}: {str(exc).splitlines()[0]}") from None
    except _network_errors() as exc:
        raise HubError(f"cannot download polytope {where!r}: {_first_line(exc)}") from None
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise HubError(f"the repo {where!r} holds no {META_FILE}: it is not a sap-viz polytope")
    return folder


def push_folder(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Upload an exported folder to ``repo_id`` (created if missing); returns the repo's URL.

    Only the export's own files are uploaded, so a stray file in the folder never reaches the Hub.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    parsed = parse_hub_ref(repo_id)
    if parsed is None or parsed[1] is not None:
        raise HubError(f"{repo_id!r} is not a Hub repo id (expected owner/name)")
    folder = check_export(folder)
    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` with a token that may write to "
                       f"{repo_id!r}; nothing was uploaded")
    if _offline():
        raise HubError("HF_HUB_OFFLINE=1 is set: pushing needs the network; unset it to upload (nothing was uploaded)")
    api = HfApi(token=token, library_name="sap-viz", library_version=__version__)
    try:
        url = api.create_repo(parsed[0], private=private, exist_ok=True)
        api.upload_folder(repo_id=parsed[0], folder_path=str(folder), allow_patterns=list(EXPORT_FILES),
                          commit_message=f"Polytope exported by sap-viz {__version__}")
    except HfHubHTTPError as exc:
        raise HubError(f"the Hub refused the upload to {repo_id!r}: {str(exc).splitlines()[0]} "
                       "(does the token have write access?)") from None
    except OfflineModeIsEnabled:
        raise HubError("HF_HUB_OFFLINE=1 is set: pushing needs the network") from None
    except _network_errors() as exc:
        raise HubError(f"cannot reach the Hub to upload to {repo_id!r}: {_first_line(exc)}") from None
    return str(url)
