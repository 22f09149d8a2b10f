"""One training run: its configuration, the DP-SGD step, the loop, and the mechanisms and tuning that shape it.

:mod:`~dpfair.training.mechanisms` are the privacy mechanisms (one file each, a registry);
:mod:`~dpfair.training.tuning` is private hyperparameter search.
"""

from dpfair.faces import lazy_face

__all__, __getattr__, __dir__ = lazy_face(
    __name__,
    {
        "TrainConfig": "config",
        "RECIPE_FIELDS": "config",
        "StepRecipe": "recipe",
        "step_recipe": "recipe",
        "Trainer": "steps",
        "resolve_mode": "steps",
        "TrainResult": "loop",
        "train": "loop",
        "predict": "loop",
        "predict_logits": "loop",
        "Ema": "iterates",
        "set_lr": "iterates",
    },
)
