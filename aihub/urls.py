"""``<hub>/aihub/``: seed 000's client's API (``api/v1/…``) and the signed addresses it sends
files to and fetches them from."""

from django.urls import include, path

from aihub.views import account, assets, files, jobs, sharing

api = [
    path("users/auth/user/", account.CurrentUser.as_view(), name="aihub-user"),
    path("users/auth/login/", account.Login.as_view(), name="aihub-login"),
    path("devices/", account.Devices.as_view(), name="aihub-devices"),
    path("frameworks/", account.Frameworks.as_view(), name="aihub-frameworks"),
    path("models/", assets.Models.as_view(), name="aihub-models"),
    path("models/<slug:model_id>/", assets.ModelDetail.as_view(), name="aihub-model"),
    path(
        "models/<slug:transfer_id>/multipart_upload/",
        assets.ModelUpload.as_view(),
        name="aihub-model-upload",
    ),
    path("models/<slug:transfer_id>/upload_complete/", assets.CredentialsComplete.as_view()),
    path(
        "models/<slug:model_id>/download/",
        assets.ModelDownload.as_view(),
        name="aihub-model-download",
    ),
    path("models/<slug:model_id>/shared_access/", sharing.ModelSharedAccess.as_view()),
    path("datasets/", assets.Datasets.as_view(), name="aihub-datasets"),
    path("datasets/<slug:dataset_id>/", assets.DatasetDetail.as_view(), name="aihub-dataset"),
    path("datasets/<slug:transfer_id>/upload_url/", assets.DatasetUpload.as_view()),
    path("datasets/<slug:transfer_id>/upload_complete/", assets.CredentialsComplete.as_view()),
    path("datasets/<slug:dataset_id>/download_data/", assets.DatasetDownload.as_view()),
    path("datasets/<slug:dataset_id>/shared_access/", sharing.DatasetSharedAccess.as_view()),
    path("jobs/", jobs.Jobs.as_view(), name="aihub-jobs"),
    path("job_summaries/", jobs.JobSummaries.as_view(), name="aihub-job-summaries"),
    path("jobs/<slug:job_id>/", jobs.JobDetail.as_view(), name="aihub-job"),
    path("jobs/<slug:job_id>/result/", jobs.JobResult.as_view()),
    path("jobs/<slug:job_id>/download_compiled_model/", jobs.CompiledModel.as_view()),
    path(
        "jobs/<slug:job_id>/device_runs/<str:attempt>/artifact_list/<str:artifact_type>/",
        jobs.Artifacts.as_view(),
    ),
    path("jobs/<slug:job_id>/shared_access/", sharing.JobSharedAccess.as_view()),
    path("projects/<str:project>/<path:rest>", account.Projects.as_view()),
]

urlpatterns = [
    path("api/v1/", include(api)),
    path("transfers/<str:token>/", files.transfer, name="aihub-transfer"),
    path("files/<str:token>/", files.file, name="aihub-file"),
]
