"""End to end on synthetic_lesions: the planted site gap (site B is harder) is found with the right sign."""

import math

import torch
from dpfair.data.prepare import prepare_dataset
from dpfair.fairness import evaluate_fairness
from dpfair.training.config import TrainConfig
from dpfair.training.loop import predict, train


def test_planted_site_gap_is_detected_at_epsilon_inf():
    prepared = prepare_dataset(name="synthetic_lesions", params={"n_samples": 3000, "image_size": 32})
    x, y = prepared.part("train")
    result = train(
        model_name="cnn",
        modality="image",
        x_train=x,
        y_train=y,
        epsilon=math.inf,
        delta=prepared.meta["delta"],
        config=TrainConfig(epochs=15, batch_size=128, lr=0.002),
        seed=0,
    )
    held_out = prepared.samples[prepared.samples["split"].isin(["val", "test"])]
    rows = torch.from_numpy(held_out["row"].to_numpy())
    scores = held_out.assign(score=predict(result.model, prepared.x[rows]))
    report = evaluate_fairness(scores=scores, attributes=["site"], n_boot=1000)
    auroc = report.gaps.set_index("metric").loc["auroc"]
    by_group = report.groups[report.groups["metric"] == "auroc"].set_index("group")["value"]
    assert by_group["A"] > by_group["B"], by_group
    assert auroc["p_value"] < 0.05 and auroc["gap"] > auroc["null_gap"], auroc  # beyond the noise floor
    # the signed difference (comparison − reference) has the planted sign and excludes 0
    if auroc["comparison_group"] == "A":  # A − B
        assert auroc["signed_ci_low"] > 0, auroc
    else:  # B − A
        assert auroc["reference_group"] == "A" and auroc["signed_ci_high"] < 0, auroc
