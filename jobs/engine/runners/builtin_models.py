"""Built-in base models that a customization job can start from when it names no checkpoint."""

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in [
        BuiltinModel(
            name="tiny-char-lm",
            description=(
                "A character-level language model (embedding, one GRU layer, output head) small "
                "enough to fine-tune on two CPU cores in seconds; learns completions for prompts."
            ),
        ),
    ]
}
DEFAULT_BASE_MODEL = "tiny-char-lm"
