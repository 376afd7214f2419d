"""Who may change what everyone sees: the owner (holds ``SAP_VIZ_OWNER_TOKEN``) and visitors (everyone else).

With no token configured (a local, single-user run) the one user is the owner. With a token, a
session becomes the owner's when the token is given once (the UI's sign-in box) or with an API call
(``owner_token``); every other session is a visitor's. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from sap_viz.env import env_str
from sap_viz.errors import PermissionDenied

OWNER_TOKEN_ENV = "SAP_VIZ_OWNER_TOKEN"


@dataclass(frozen=True)
class Roles:
    token: str | None = None  # None: no owner secret configured, the single local user is the owner

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Roles:
        return cls(env_str(OWNER_TOKEN_ENV, None, environ))

    @property
    def local(self) -> bool:
        """No owner secret: everyone is the owner (meant for a local run, not a public server)."""
        return self.token is None

    def is_owner_token(self, given: object) -> bool:
        """True when ``given`` is the configured token (always True for a local run)."""
        if self.token is None:
            return True
        if not isinstance(given, str) or not given:
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token.encode("utf-8"))

    def check_token(self, given: object) -> None:
        """Raise when a token was given and is wrong (an empty one just means "visitor")."""
        if self.token is not None and isinstance(given, str) and given.strip() and not self.is_owner_token(given):
            raise PermissionDenied("the owner token is wrong")


def owner_only(action: str) -> PermissionDenied:
    """The one-line refusal of an owner-only action."""
    return PermissionDenied(f"only the owner can {action}: sign in with the owner token ({OWNER_TOKEN_ENV}) or pass owner_token")
