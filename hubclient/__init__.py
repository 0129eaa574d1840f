"""Python client of the Model Job Hub.

from hubclient import Client
hub = Client()                      # HUB_URL and HUB_API_TOKEN from the environment
job = hub.submit_customization_job(None, "train.jsonl", hyperparameters={"epochs": 5})
print(job.wait())                   # returns the moment the job finishes (pushed, not polled)
job.download_target_model("model.onnx")

run = hub.start_run(name="on my laptop", epochs=3)   # training that runs here, tracked live
run.log(step=1, train_loss=2.3); run.finish()
Trainer(..., callbacks=[HubCallback(hub)])            # the same, from transformers' Trainer
"""

from typing import Any

from hubclient.client import Client
from hubclient.errors import (
    AuthenticationError,
    BadInputError,
    ConflictError,
    HubError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from hubclient.generate import Answer
from hubclient.jobs import (
    CompileJob,
    CustomizationJob,
    Dataset,
    Device,
    EvaluationJob,
    ExternalJob,
    InferenceJob,
    Job,
    JobResults,
    JobStatus,
    LinkJob,
    Model,
    ProfileJob,
    StatusDetails,
    TargetModel,
)
from hubclient.runs import Run

__all__ = [
    "Answer",
    "AuthenticationError",
    "BadInputError",
    "Client",
    "CompileJob",
    "ConflictError",
    "CustomizationJob",
    "Dataset",
    "Device",
    "EvaluationJob",
    "ExternalJob",
    "HubCallback",
    "HubError",
    "InferenceJob",
    "Job",
    "JobResults",
    "JobStatus",
    "LinkJob",
    "Model",
    "NotFoundError",
    "PermissionDeniedError",
    "ProfileJob",
    "Run",
    "StatusDetails",
    "TargetModel",
    "UnavailableError",
]


def __getattr__(name: str) -> Any:
    """``HubCallback`` needs transformers, which the rest of the client does not: imported
    when asked for."""
    if name == "HubCallback":
        from hubclient.callback import HubCallback

        return HubCallback
    raise AttributeError(f"module 'hubclient' has no attribute {name!r}")
