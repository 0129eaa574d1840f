from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from aihub.views import uploads as aihub_uploads
from audit import views as audit_views
from hubsite import health, scrape, sso, views
from jobs.web import views as jobs_views
from notifications import api as notifications_api
from sharing import api as sharing_api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="jobs:list", permanent=False), name="home"),
    path("accounts/login/", views.SignInView.as_view(), name="login"),
    path("accounts/logout/", views.SignOutView.as_view(), name="logout"),
    # Single sign-on (hubsite/sso.py): where the sign-in button goes, and where the provider
    # sends the browser back (mozilla-django-oidc's names; its own sign-out route is not used:
    # accounts/logout/ signs out of the provider too).
    path("oidc/authenticate/", sso.SignIn.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", sso.Callback.as_view(), name="oidc_authentication_callback"),
    path("account/token/", views.api_token, name="api-token"),
    path("account/activity/", audit_views.activity, name="activity"),
    path("api/v1/account/activity/", audit_views.ActivityList.as_view(), name="api-activity"),
    # Where seed 000's client sends people (its web_url): a model's page, a dataset's, the
    # account page with the token. A job's (jobs/<id>/) is the hub's own address already.
    path("account/", login_required(RedirectView.as_view(pattern_name="api-token"))),
    path(
        "docs/hub/getting_started.html",
        login_required(RedirectView.as_view(url="/account/token/#qai-hub")),
    ),
    path("models/<slug:model_id>/", jobs_views.model_detail, name="model-short"),
    path("datasets/<slug:dataset_id>/", jobs_views.dataset_detail, name="dataset-short"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", scrape.metrics, name="metrics"),
    path("jobs/", include("jobs.web.urls")),
    path("", include("sharing.urls")),
    path("", include("notifications.urls")),
    # Uploads in parts (the hub's client, for large files; the machinery is the qai-hub face's).
    path("api/v1/uploads/", aihub_uploads.Uploads.as_view(), name="api-uploads"),
    path(
        "api/v1/uploads/<slug:upload>/complete/",
        aihub_uploads.UploadComplete.as_view(),
        name="api-upload-complete",
    ),
    path("api/v1/", include("jobs.web.api.urls")),
    path(
        "api/v1/jobs/<slug:job_id>/sharing/",
        sharing_api.JobSharing.as_view(),
        name="api-job-sharing",
    ),
    path(
        "api/v1/models/<slug:model_id>/sharing/",
        sharing_api.ModelSharing.as_view(),
        name="api-model-sharing",
    ),
    path(
        "api/v1/datasets/<slug:dataset_id>/sharing/",
        sharing_api.DatasetSharing.as_view(),
        name="api-dataset-sharing",
    ),
    path(
        "api/v1/account/notifications/",
        notifications_api.NotificationSettingsView.as_view(),
        name="api-notifications",
    ),
    path(
        "api/v1/account/notifications/rotate-secret/",
        notifications_api.RotateSecret.as_view(),
        name="api-notifications-rotate-secret",
    ),
    path(
        "api/v1/account/notifications/test/",
        notifications_api.TestWebhook.as_view(),
        name="api-notifications-test",
    ),
    path(
        "api/v1/account/notifications/recent/",
        notifications_api.RecentDeliveries.as_view(),
        name="api-notifications-recent",
    ),
    path("v1/customization/", include("jobs.web.api.nemo")),  # NeMo Customizer compatible routes
    path("v1/evaluation/", include("jobs.web.api.nemo_evaluation")),  # NeMo Evaluator's
    path("aihub/", include("aihub.urls")),  # seed 000's qai-hub client (aihub/)
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file: the page keeps the no-inline-script policy.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/login/", views.admin_login),
    path("admin/", admin.site.urls),
]

handler400 = "hubsite.views.bad_request"
handler403 = "hubsite.views.permission_denied"
handler404 = "hubsite.views.not_found"
handler500 = "hubsite.views.server_error"

admin.site.site_header = "Model Job Hub administration"
admin.site.site_title = "Model Job Hub"
