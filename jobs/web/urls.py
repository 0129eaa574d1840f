from django.urls import path

from jobs.web import device_job_views, devices, views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("new/link/", views.submit_link, name="submit-link"),
    path("new/customization/", views.submit_customization, name="submit-customization"),
    path("new/evaluation/", views.submit_evaluation, name="submit-evaluation"),
    path("new/compile/", device_job_views.submit_compile, name="submit-compile"),
    path("new/profile/", device_job_views.submit_profile, name="submit-profile"),
    path("new/inference/", device_job_views.submit_inference, name="submit-inference"),
    path("compare-profiles/", device_job_views.compare_profiles_page, name="compare-profiles"),
    path("upload/model/", views.upload_model, name="upload-model"),
    path("upload/dataset/", views.upload_dataset, name="upload-dataset"),
    path("compare/", views.compare, name="compare"),
    path("models/", views.model_list, name="models"),
    path("models/<slug:model_id>/", views.model_detail, name="model"),
    path(
        "models/<slug:model_id>/delete/", views.delete_page, {"kind": "model"}, name="delete-model"
    ),
    path("devices/", devices.device_list, name="devices"),
    path("devices/<slug:device_id>/", devices.device_detail, name="device-detail"),
    path("datasets/", views.dataset_list, name="datasets"),
    path("datasets/<slug:dataset_id>/", views.dataset_detail, name="dataset"),
    path(
        "datasets/<slug:dataset_id>/delete/",
        views.delete_page,
        {"kind": "dataset"},
        name="delete-dataset",
    ),
    path("<slug:public_id>/", views.job_detail, name="detail"),
    path("<slug:public_id>/row/", views.job_row, name="row"),
    path("<slug:public_id>/summary/", device_job_views.job_summary, name="device-job-summary"),
    path("<slug:public_id>/cancel/", views.job_action, {"action": "cancel"}, name="cancel"),
    path("<slug:public_id>/resubmit/", views.job_action, {"action": "resubmit"}, name="resubmit"),
    path("<slug:public_id>/delete/", views.delete_page, {"kind": "job"}, name="delete"),
    path("<slug:public_id>/rename/", views.job_action, {"action": "rename"}, name="rename"),
]
