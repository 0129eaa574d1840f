"""Python client of the Model Job Hub.

from hubclient import Client
hub = Client()                      # HUB_URL and HUB_API_TOKEN from the environment
job = hub.submit_customization_job(None, "train.jsonl", hyperparameters={"epochs": 5})
print(job.wait())                   # returns the moment the job finishes (pushed, not polled)
job.download_target_model("model.onnx")
"""

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
from hubclient.jobs import (
    CustomizationJob,
    Dataset,
    Job,
    JobResults,
    JobStatus,
    LinkJob,
    Model,
    StatusDetails,
    TargetModel,
)

__all__ = [
    "AuthenticationError",
    "BadInputError",
    "Client",
    "ConflictError",
    "CustomizationJob",
    "Dataset",
    "HubError",
    "Job",
    "JobResults",
    "JobStatus",
    "LinkJob",
    "Model",
    "NotFoundError",
    "PermissionDeniedError",
    "StatusDetails",
    "TargetModel",
    "UnavailableError",
]
