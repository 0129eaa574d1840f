"""The generation worker's side of "Try it": answer one prompt, streaming the answer into its
row as it grows, with the model kept loaded for the next prompt.

A generation worker (``celery worker -Q <namespace>.generate --pool solo``; ``runhub`` starts
one) keeps up to HUB_GENERATE_MODELS_KEPT models in memory, each until it has answered nothing
for HUB_GENERATE_KEEP_SECONDS (ten minutes by default): a page's second prompt, and the base and
fine-tuned answers side by side, start without loading anything. What a reader sees comes from
the row (jobs/models/generation.py), written at most every FLUSH_SECONDS while tokens come, so
the answer streams the same in both profiles without a second path for Redis.

The prompt is read by the model's own tokenizer here, never in a web process: a user's tokenizer
and chat template are theirs to make slow or large, and the worker's limits (time per answer,
tokens per answer) bound them.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery.signals import worker_ready
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from hubsite import object_storage
from jobs.domain import base_models, hf_models, sft_data
from jobs.engine import scratch
from jobs.engine.scratch import local_path
from jobs.models import Generation, GenerationStatus

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.03  # at most ~30 writes a second per answer, whatever the model's speed


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    context: int
    used_at: float = field(default_factory=time.monotonic)
    folder: tempfile.TemporaryDirectory[str] | None = None  # an unpacked upload's

    def release(self) -> None:
        if self.folder is not None:
            self.folder.cleanup()


class Kept:
    """The models this worker holds, least recently used first, dropped when idle too long
    (checked at each prompt and by a timer after the last one) or when more are wanted."""

    def __init__(self) -> None:
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.loads = 0  # how many times a model was loaded (read by tests and the benchmark)

    def get(self, key: str, load: Any) -> tuple[Loaded, bool]:
        """(the loaded model, whether it was kept from an earlier prompt)."""
        self.drop_idle()
        with self._lock:
            found = self._loaded.get(key)
            if found is not None:
                self._loaded.move_to_end(key)
                found.used_at = time.monotonic()
                return found, True
        loaded = load()
        self.loads += 1
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > settings.HUB_GENERATE_MODELS_KEPT:
                _, oldest = self._loaded.popitem(last=False)
                oldest.release()
        return loaded, False

    def touched(self) -> None:
        """After an answer: the idle clock starts again, and a timer drops what stays idle."""
        keep = settings.HUB_GENERATE_KEEP_SECONDS
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(keep + 1, self.drop_idle)
        self._timer.daemon = True
        self._timer.start()

    def drop_idle(self) -> None:
        limit = time.monotonic() - settings.HUB_GENERATE_KEEP_SECONDS
        with self._lock:
            for key in [k for k, v in self._loaded.items() if v.used_at < limit]:
                self._loaded.pop(key).release()

    def clear(self) -> None:
        with self._lock:
            while self._loaded:
                self._loaded.popitem()[1].release()
            self.loads = 0

    def __len__(self) -> int:
        return len(self._loaded)


KEPT = Kept()


@worker_ready.connect
def _warm_up(sender: Any = None, **kwargs: Any) -> None:
    """A generation worker imports PyTorch and transformers as it starts (about 4 s here), not
    at its first prompt: the first answer then waits only for its model to load."""
    amqp = getattr(getattr(sender, "app", None), "amqp", None)
    consumed = getattr(getattr(amqp, "queues", None), "consume_from", None) or {}
    if settings.HUB_GENERATION_QUEUE not in consumed:
        return
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401


class Refused(Exception):
    """A prompt this model cannot answer; the message says why."""


def _load(generation: Generation) -> Loaded:
    import torch
    from transformers import AutoModelForCausalLM

    from jobs.engine.training.sft import load_tokenizer

    unpacked: tempfile.TemporaryDirectory[str] | None = None
    if generation.model is not None:
        unpacked = tempfile.TemporaryDirectory(prefix="hub-generate-")
        try:
            folder = hf_models.unpack_stored(
                local_path(generation.model.file), Path(unpacked.name) / "model"
            )
        except (ValidationError, OSError) as error:
            unpacked.cleanup()
            raise Refused(
                f"Model {generation.model.public_id} cannot be read: {type(error).__name__}."
            ) from None
        except Exception as error:
            unpacked.cleanup()
            if not object_storage.unreachable(error):
                raise
            raise Refused(
                f"The hub's object storage is not answering ({object_storage.words(error)}); "
                "try again shortly."
            ) from None
        finally:
            scratch.release()  # unpacked: the stored copy may be evicted again
    else:
        try:
            folder = base_models.server_model(generation.server_model).folder
        except ValidationError:
            raise Refused(f"The model {generation.server_model!r} is no longer offered.") from None
    try:
        tokenizer = load_tokenizer(str(folder))
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32
        ).eval()
    except Exception as error:  # a model the loaders cannot read, however they say so
        if unpacked is not None:
            unpacked.cleanup()
        raise Refused(
            f"The model cannot be loaded: {type(error).__name__}: {error}"[:500]
        ) from None
    context = int(getattr(model.config, "max_position_embeddings", None) or 2048)
    return Loaded(model, tokenizer, context, folder=unpacked)


def _key(generation: Generation) -> str:
    if generation.model is not None:
        return f"model:{generation.model.public_id}:{generation.model.sha256}"
    return f"offered:{generation.server_model}"


def _prompt(loaded: Loaded, generation: Generation) -> list[int]:
    from jobs.engine.runners.evaluation import prompt_ids

    text = generation.prompt
    if generation.chat and getattr(loaded.tokenizer, "chat_template", None):
        try:
            text = sft_data.prompt_text(loaded.tokenizer, [{"role": "user", "content": text}])
        except Exception as error:  # the model's own template, which may fail however
            raise Refused(f"The model's chat template fails: {error}"[:500]) from None
    ids = prompt_ids(loaded.tokenizer, text)
    if len(ids) >= loaded.context:
        raise Refused(
            f"The prompt is {len(ids)} tokens; this model reads at most {loaded.context} "
            "(its context), prompt and answer together. Shorten the prompt."
        )
    return ids


class _Writer:
    """transformers' streamer: each new token's text goes into the row, at most every
    FLUSH_SECONDS; ``stopped`` turns true when the row is no longer running (failed by the
    hub), which ends the generation at its next token."""

    def __init__(self, generation: Generation, tokenizer: Any) -> None:
        self.generation, self.tokenizer = generation, tokenizer
        self.ids: list[int] = []
        self.prompt_seen = False
        self.flushed_at = 0.0
        self.first_at: Any = None
        self.stopped = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() hands the streamer the prompt first
            self.prompt_seen = True
            return
        self.ids.extend(int(i) for i in value.flatten().tolist())
        if self.first_at is None:
            self.first_at = timezone.now()
            self.flush()
        elif time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def end(self) -> None:
        self.flush(final=True)

    def text(self, final: bool) -> str:
        text = str(self.tokenizer.decode(self.ids, skip_special_tokens=True))
        # A character whose bytes are split over tokens decodes as U+FFFD until its last byte
        # comes: held back until then, so that what readers were sent stays the answer's start.
        return text if final else text.rstrip("\ufffd")

    def flush(self, final: bool = False) -> None:
        self.flushed_at = time.monotonic()
        written = Generation.objects.filter(
            pk=self.generation.pk, status=GenerationStatus.RUNNING
        ).update(text=self.text(final), tokens=len(self.ids), first_token_at=self.first_at)
        self.stopped = not written


def run(pk: int, worker: str = "") -> str:
    """Answer the prompt; its row ends DONE with the answer, or FAILED saying why."""
    import torch

    started = Generation.objects.filter(pk=pk, status=GenerationStatus.QUEUED).update(
        status=GenerationStatus.RUNNING, started_at=timezone.now(), worker=worker[:200]
    )
    if not started:  # failed by the hub while queued (no worker in time), or answered already
        return "not queued"
    generation = Generation.objects.select_related("model").get(pk=pk)
    torch.set_num_threads(settings.HUB_TORCH_THREADS)
    try:
        loaded, warm = KEPT.get(_key(generation), lambda: _load(generation))
        ids = _prompt(loaded, generation)
    except Refused as refusal:
        _end(pk, GenerationStatus.FAILED, error=str(refusal))
        return "refused"
    Generation.objects.filter(pk=pk).update(prompt_tokens=len(ids), warm=warm)
    writer = _Writer(generation, loaded.tokenizer)
    try:
        _generate(loaded, generation, ids, writer)
    except Exception as error:
        logger.exception("Generation %s failed", generation.public_id)
        _end(pk, GenerationStatus.FAILED, error=f"The model failed: {type(error).__name__}.")
        return "failed"
    finally:
        KEPT.touched()
    writer.flush(final=True)
    _end(pk, GenerationStatus.DONE)
    return "done"


def _generate(loaded: Loaded, generation: Generation, ids: list[int], writer: _Writer) -> None:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stopped(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), writer.stopped, dtype=torch.bool)

    tokenizer = loaded.tokenizer
    room = loaded.context - len(ids)
    options: dict[str, Any] = {
        "max_new_tokens": min(generation.max_tokens, room),
        "max_time": float(settings.HUB_GENERATE_SECONDS),
        "do_sample": generation.temperature > 0,
    }
    if generation.temperature > 0:
        options["temperature"] = generation.temperature
    tensor = torch.tensor([ids])
    with torch.no_grad():
        loaded.model.generate(
            tensor,
            attention_mask=torch.ones_like(tensor),
            pad_token_id=tokenizer.pad_token_id,
            streamer=writer,
            stopping_criteria=StoppingCriteriaList([_Stopped()]),
            **options,
        )


def _end(pk: int, status: str, error: str = "") -> None:
    Generation.objects.filter(pk=pk, status=GenerationStatus.RUNNING).update(
        status=status, error=error, finished_at=timezone.now()
    )


def forget_all() -> None:
    """Drop every kept model (tests; a worker's shutdown)."""
    KEPT.clear()
