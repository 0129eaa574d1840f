"""Knowledge distillation (``training_type: "distillation"``): the student (the job's base model)
learns the teacher's token distributions on the completions of the dataset's rows.

The rows are SFT rows (prompt/completion or chat) read and batched exactly as SFT reads them
(jobs.engine.training.data); where SFT compares the student's prediction of each completion token
with that token, distillation compares it with the teacher's whole distribution there: the loss is
KL(teacher ‖ student) of both softmaxes at ``distillation.temperature``, times the temperature
squared (so that the gradients keep their size as the temperature softens the distributions;
Hinton, Vinyals and Dean, 2015), averaged over the completion tokens. The validation loss is the
same KL on the validation rows, so "val_loss falls" means "the student moves towards the teacher".

TRL's DistillationTrainer generates completions with the student on the fly (on-policy, with
vLLM in mind); the hub's datasets already hold completions, so the loss on them is computed here,
in a Trainer's ``compute_loss``. The teacher stays frozen in evaluation mode beside the student:
its memory is counted before the job starts (jobs.engine.runners.customization).
"""

from __future__ import annotations

from typing import Any

from jobs.domain.sft_data import IGNORE


def teacher_model(folder: str, dtype: Any) -> Any:
    """The teacher, frozen, in evaluation mode; on the student's device once it is known."""
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
    teacher.config.use_cache = False
    teacher.requires_grad_(False)
    return teacher.eval()


def kl_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float) -> Any:
    """KL(teacher ‖ student) per completion token (labels not IGNORE, shifted as the language
    modelling loss shifts them), times temperature², averaged over those tokens."""
    import torch.nn.functional as F

    mask = labels[:, 1:] != IGNORE
    student = student_logits[:, :-1][mask].float() / temperature
    teacher = teacher_logits[:, :-1][mask].float() / temperature
    if student.numel() == 0:
        return student_logits.sum() * 0.0  # a batch with nothing to learn: no gradient, no NaN
    divergence = F.kl_div(
        F.log_softmax(student, dim=-1),
        F.log_softmax(teacher, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return divergence * temperature**2


def trainer_class(base: type, teacher: Any, temperature: float) -> type:
    """``base`` (the hub's counting Trainer) with the distillation loss."""
    import torch

    class Distilling(base):
        def compute_loss(
            self, model: Any, inputs: Any, return_outputs: bool = False, **kwargs: Any
        ) -> Any:
            labels = inputs["labels"]
            feed = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**feed)
            on = next(model.parameters()).device
            if next(teacher.parameters()).device != on:
                teacher.to(on)
            with torch.no_grad():
                expected = teacher(**feed).logits
            loss = kl_loss(outputs.logits, expected, labels, temperature)
            return (loss, outputs) if return_outputs else loss

    return Distilling
