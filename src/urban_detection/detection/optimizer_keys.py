"""The optimizer and schedule settings a config may hold: type spellings and keys per type (no TensorFlow)."""
from __future__ import annotations

# Accepted spellings of optimizer and schedule types (the OD API names too) -> canonical type.
OPTIMIZER_ALIASES = {"momentum": "momentum", "momentum_optimizer": "momentum", "adam": "adam",
                     "adam_optimizer": "adam", "sgd": "sgd"}
SCHEDULE_ALIASES = {"cosine": "cosine", "cosine_decay": "cosine", "cosine_decay_learning_rate": "cosine",
                    "manual_step": "manual_step", "manual_step_learning_rate": "manual_step",
                    "constant": "constant", "constant_learning_rate": "constant"}

# Keys of `optimizer` per type.
COMMON_OPTIMIZER_KEYS = ("type", "schedule", "learning_rate", "clipnorm", "global_clipnorm", "weight_decay")
OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    "momentum": COMMON_OPTIMIZER_KEYS + ("momentum", "nesterov"),
    "sgd": COMMON_OPTIMIZER_KEYS + ("nesterov",),
    "adam": COMMON_OPTIMIZER_KEYS + ("beta_1", "beta_2", "epsilon"),
}
# Keys of `optimizer.schedule` per type: (required, optional), `type` aside.
SCHEDULE_REQUIRED_OPTIONAL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cosine": (("base_lr", "total_steps"), ("warmup_lr", "warmup_steps", "hold_base_rate_steps", "decay_fraction")),
    "manual_step": (("initial_lr",), ("steps", "warmup")),
    "constant": (("learning_rate",), ()),
}
SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    kind: ("type", *required, *optional) for kind, (required, optional) in SCHEDULE_REQUIRED_OPTIONAL.items()}
