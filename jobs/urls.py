from django.urls import path

from jobs import views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("<slug:public_id>/", views.job_detail, name="detail"),
]
