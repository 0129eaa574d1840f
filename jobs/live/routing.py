from django.urls import path

from jobs.live.consumers import JobConsumer, JobListConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobListConsumer.as_asgi()),
    path("ws/jobs/<slug:job_id>/", JobConsumer.as_asgi()),
]
