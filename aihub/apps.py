from django.apps import AppConfig


class AiHubConfig(AppConfig):
    name = "aihub"
    verbose_name = "qai-hub face"

    def ready(self) -> None:
        # The body gate reads signed upload addresses before Django reads a body.
        from aihub.transfers import body_allowance
        from hubsite import uploads

        uploads.signed_upload_allowance = body_allowance
