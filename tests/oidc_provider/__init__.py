"""A small OpenID Connect provider for the single sign-on tests, run as its own process on
loopback (tests/oidc.py starts it): django-oauth-toolkit's OIDC support, discovery, the code flow
with PKCE, RS256 ID tokens. A test tells it, through /test/ routes that exist only here, which
people it knows and how to misbehave (a wrong audience, an expired or forged ID token)."""
