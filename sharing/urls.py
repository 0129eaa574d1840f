from django.urls import path

from sharing import views

app_name = "sharing"

urlpatterns = [path("invitations/<str:token>/", views.accept, name="accept")]
