from django.urls import path

from sharing import views

app_name = "sharing"

urlpatterns = [
    path("invitations/<str:token>/", views.accept, name="accept"),
    path("jobs/<slug:public_id>/sharing/", views.job_sharing, name="job-sharing"),
    path("jobs/models/<slug:model_id>/sharing/", views.model_sharing, name="model-sharing"),
    path("jobs/datasets/<slug:dataset_id>/sharing/", views.dataset_sharing, name="dataset-sharing"),
]
