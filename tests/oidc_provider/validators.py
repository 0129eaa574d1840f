"""The claims the provider gives, and the ways a test asks it to misbehave."""

from __future__ import annotations

import base64
import time
from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

# What the provider does wrong for the next sign-ins: "" (nothing), "wrong_audience",
# "expired", "bad_signature". Set by POST /test/mode.
MODE = {"mode": ""}
UNVERIFIED = "unverified-email"  # a group: its members' addresses are not verified


class Validator(OAuth2Validator):
    oidc_claim_scope = None  # every claim below, whatever the scopes

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        groups = sorted(g.name for g in user.groups.all())
        return {
            "email": user.email,
            "email_verified": UNVERIFIED not in groups,
            "preferred_username": user.username,
            "given_name": user.first_name,
            "family_name": user.last_name,
            "groups": [g for g in groups if g != UNVERIFIED],
        }

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: Any) -> Any:
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        if MODE["mode"] == "wrong_audience":
            claims["aud"] = "another-application"
        elif MODE["mode"] == "expired":
            claims["iat"] = int(time.time()) - 7200
            claims["exp"] = int(time.time()) - 3600
        return claims, expiration

    def finalize_id_token(self, id_token: Any, token: Any, token_handler: Any, request: Any) -> str:
        signed = str(super().finalize_id_token(id_token, token, token_handler, request))
        if MODE["mode"] == "bad_signature":
            header, payload, signature = signed.split(".")
            forged = base64.urlsafe_b64decode(signature + "==")[::-1]  # same length, not its
            signed = ".".join(
                [header, payload, base64.urlsafe_b64encode(forged).rstrip(b"=").decode()]
            )
        return signed
