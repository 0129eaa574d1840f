"""Customization jobs from before Hugging Face training fine-tuned tiny-char-lm's weights, all of
them: say so, rather than let them read as LoRA (the new default) on their pages and the API."""

from django.db import migrations


def mark_all_weights(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    earlier = Job.objects.filter(kind="customization").exclude(hyperparameters__has_key="finetuning_type")
    for job in earlier.iterator():
        job.hyperparameters = {**job.hyperparameters, "finetuning_type": "all_weights"}
        job.save(update_fields=["hyperparameters"])


class Migration(migrations.Migration):
    dependencies = [("jobs", "0005_hugging_face_training")]

    operations = [migrations.RunPython(mark_all_weights, migrations.RunPython.noop)]
