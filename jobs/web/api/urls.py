from django.urls import path

from jobs.web.api import assets, deletion, device_jobs, devices, generation, jobs, profiles

urlpatterns = [
    path("jobs/", jobs.JobList.as_view(), name="api-jobs"),
    path("jobs/link/", jobs.LinkSubmit.as_view(), name="api-submit-link"),
    path(
        "jobs/customization/", jobs.CustomizationSubmit.as_view(), name="api-submit-customization"
    ),
    path("jobs/evaluation/", jobs.EvaluationSubmit.as_view(), name="api-submit-evaluation"),
    path("jobs/external/", jobs.ExternalRunStart.as_view(), name="api-start-external"),
    path("jobs/compile/", device_jobs.CompileSubmit.as_view(), name="api-submit-compile"),
    path("jobs/profile/", device_jobs.ProfileSubmit.as_view(), name="api-submit-profile"),
    path("jobs/inference/", device_jobs.InferenceSubmit.as_view(), name="api-submit-inference"),
    path("jobs/<slug:job_id>/", jobs.JobDetail.as_view(), name="api-job"),
    path(
        "jobs/<slug:public_id>/deletion/",
        deletion.JobDeletionPlan.as_view(),
        name="api-job-deletion",
    ),
    path("jobs/<slug:job_id>/report/", jobs.ExternalRunReport.as_view(), name="api-job-report"),
    path("jobs/<slug:job_id>/finish/", jobs.ExternalRunFinish.as_view(), name="api-job-finish"),
    path("jobs/<slug:job_id>/cancel/", jobs.JobCancel.as_view(), name="api-job-cancel"),
    path("jobs/<slug:job_id>/resubmit/", jobs.JobResubmit.as_view(), name="api-job-resubmit"),
    path("jobs/<slug:job_id>/status/", jobs.JobStatusDetails.as_view(), name="api-job-status"),
    path("jobs/<slug:job_id>/queue/", jobs.JobQueuePosition.as_view(), name="api-job-queue"),
    path(
        "jobs/<slug:job_id>/status-logs/", jobs.JobStatusLogs.as_view(), name="api-job-status-logs"
    ),
    path("jobs/<slug:job_id>/logs/", jobs.JobLog.as_view(), name="api-job-logs"),
    path("jobs/<slug:job_id>/metrics/", jobs.JobMetrics.as_view(), name="api-job-metrics"),
    path(
        "jobs/<slug:job_id>/target-model/",
        assets.TargetModelDownload.as_view(),
        name="api-job-target-model",
    ),
    path("jobs/<slug:job_id>/results/", assets.ResultsDownload.as_view(), name="api-job-results"),
    path(
        "jobs/<slug:job_id>/artifacts/<str:name>/",
        assets.ArtifactDownload.as_view(),
        name="api-job-artifact",
    ),
    path("profiles/compare/", profiles.ProfileCompare.as_view(), name="api-profiles-compare"),
    path("devices/", devices.DeviceList.as_view(), name="api-devices"),
    path("devices/<slug:device_id>/", devices.DeviceDetail.as_view(), name="api-device"),
    path("models/", assets.ModelList.as_view(), name="api-models"),
    path("models/builtin/", assets.BuiltinModels.as_view(), name="api-builtin-models"),
    path("models/<slug:model_id>/", assets.ModelDetail.as_view(), name="api-model"),
    # An offered model's name may hold a slash (Org/Name): the whole path before /generate/.
    path("models/<path:model_id>/generate/", generation.Generate.as_view(), name="api-generate"),
    path(
        "generations/<slug:generation_id>/",
        generation.GenerationDetail.as_view(),
        name="api-generation",
    ),
    path(
        "models/<slug:model_id>/deletion/",
        deletion.ModelDeletionPlan.as_view(),
        name="api-model-deletion",
    ),
    path(
        "models/<slug:model_id>/download/",
        assets.ModelDownload.as_view(),
        name="api-model-download",
    ),
    path("datasets/", assets.DatasetList.as_view(), name="api-datasets"),
    path("datasets/<slug:dataset_id>/", assets.DatasetDetail.as_view(), name="api-dataset"),
    path(
        "datasets/<slug:dataset_id>/deletion/",
        deletion.DatasetDeletionPlan.as_view(),
        name="api-dataset-deletion",
    ),
    path(
        "datasets/<slug:dataset_id>/download/",
        assets.DatasetDownload.as_view(),
        name="api-dataset-download",
    ),
]
