from django.urls import path

from sharing import views

app_name = "sharing"

urlpatterns = [
    path("invitations/<str:token>/", views.accept, name="accept"),
    path("jobs/<slug:public_id>/sharing/", views.job_sharing, name="job-sharing"),
]
