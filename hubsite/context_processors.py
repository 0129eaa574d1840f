from django.conf import settings
from django.http import HttpRequest


def hub(request: HttpRequest) -> dict[str, object]:
    return {
        "hub_profile": settings.HUB_PROFILE,
        "lockout_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        "sso_name": settings.HUB_OIDC_NAME if settings.HUB_OIDC_ISSUER else None,
        "local_login": settings.HUB_LOCAL_LOGIN,
    }
