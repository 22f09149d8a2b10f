"""``dpfair design`` (dpfair.tables.design, dpfair.pipeline.design): the scaling model gives back a pilot's own
se, seeds needed fall as the target loosens, the Hanley–McNeil variance matches a bootstrap of simulated
binormal scores, the MDE really has its power in a simulation, the CLI gives back the se and MDE of a pilot
that gap_changes itself wrote, prints one line per primary row and one error line for a pilot without the
variance columns."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from dpfair.fairness import GAP_CHANGE_COLUMNS, gap_changes
from dpfair.fairness.contrasts import Contrast, ratio_bound, seed_contrast
from dpfair.pipeline.cli import main
from dpfair.pipeline.design import design_benchmark
from dpfair.tables import design
from dpfair.tables.summary import statistics_options
from scipy import stats
from test_gap_changes import table_with

KEY = {"dataset": "d", "model": "m", "method": "dpsgd", "attribute": "site", "metric": "auroc"}


def primary(epsilons=(1.0,), **key) -> pd.DataFrame:
    return pd.DataFrame([{**KEY, **key, "epsilon": e} for e in epsilons])


def pilot_contrast(*, k=5, seed_sd=0.03, test_sd=0.015, shared=0.6, n_boot=2000, seed=0):
    """A seed-paired contrast as gap_changes computes it: per-seed differences and their bootstrap replicates.

    Every seed's replicate b moves by a shared part (the same resample of the same rows) and its own part.
    """
    rng = np.random.default_rng(seed)
    common = rng.normal(0, test_sd * math.sqrt(shared), n_boot)
    own = rng.normal(0, test_sd * math.sqrt(1 - shared), (k, n_boot))
    arm = 0.05 + rng.normal(0, seed_sd, k)
    base = rng.normal(0, 0.001, k)
    arm_reps = arm[:, None] + common + own
    base_reps = np.repeat(base[:, None], n_boot, axis=1)
    return seed_contrast(arm, base, arm_reps, base_reps, paired=True)


def pilot_row(contrast, **key) -> dict:
    return {
        **KEY,
        **key,
        "epsilon": 1.0,
        "family": "primary",
        "estimand": "signed",
        "se": contrast.se,
        "df": contrast.df,
        "n_seeds": contrast.n_seeds,
        "var_seed": contrast.var_seed,
        "var_test": contrast.var_test,
        "cov_test": contrast.cov_test,
    }


def test_the_scaling_model_gives_back_the_pilots_own_se():
    contrast = pilot_contrast()
    assert contrast.var_seed > contrast.var_test - contrast.cov_test  # σ_t² not truncated
    pilot = pd.DataFrame([pilot_row(contrast)])
    same = design.design_table(
        primary_rows=primary(), pilot=pilot, seeds=contrast.n_seeds, test_rows={"d": 900}, pilot_test_rows={"d": 900}
    ).iloc[0]
    assert same["source"] == "pilot"
    assert same["se"] == pytest.approx(contrast.se, rel=1e-12)
    assert same["mde"] == pytest.approx(contrast.mde(alpha=0.05, power=0.8), rel=1e-12)  # m = 1: alpha/m = alpha
    # four times the test rows: the test parts (v − c and c) fall to a quarter, the seed part stays
    bigger = design.design_table(
        primary_rows=primary(), pilot=pilot, seeds=contrast.n_seeds, test_rows={"d": 3600}, pilot_test_rows={"d": 900}
    ).iloc[0]
    train = contrast.var_seed - (contrast.var_test - contrast.cov_test)
    want = (train + (contrast.var_test - contrast.cov_test) / 4) / contrast.n_seeds + contrast.cov_test / 4
    assert bigger["se"] == pytest.approx(math.sqrt(want), rel=1e-12)


def test_primary_rows_are_sized_at_alpha_over_m():
    contrast = pilot_contrast()
    rows = [pilot_row(contrast) | {"epsilon": e} for e in (1.0, 3.0, 10.0)]
    table = design.design_table(
        primary_rows=primary((1.0, 3.0, 10.0)), pilot=pd.DataFrame(rows), seeds=5, test_rows={}, pilot_test_rows={}
    )
    assert list(table["family_size"]) == [3, 3, 3]
    assert table["mde"].iloc[0] == pytest.approx(contrast.mde(alpha=0.05 / 3, power=0.8), rel=1e-12)


def test_seeds_needed_falls_as_the_target_loosens_and_the_shared_noise_sets_a_floor():
    parts = dict(var_seed_train=4e-4, var_test=3e-4, cov_test=1e-4)
    targets = np.linspace(0.02, 0.12, 21)
    needed = [design.seeds_needed(target=t, alpha=0.05 / 3, power=0.8, **parts) for t in targets]
    floor = design.mde_limit(alpha=0.05 / 3, power=0.8, **parts)
    reachable = [n for n, t in zip(needed, targets) if t > floor]
    assert all(math.isnan(n) for n, t in zip(needed, targets) if t <= floor)
    assert reachable and all(a >= b for a, b in zip(reachable, reachable[1:]))
    assert reachable[0] > reachable[-1] >= 2
    # each is the smallest: one seed fewer misses the target
    for n, t in zip(needed, targets):
        if math.isfinite(n) and n > 2:
            assert design.design_mde(seeds=n - 1, alpha=0.05 / 3, power=0.8, **parts) > t
    # below the floor the design says how many test rows would reach it instead, and they do
    table = design.design_table(
        primary_rows=primary(),
        pilot=pd.DataFrame([{**KEY, "epsilon": 1.0, "estimand": "signed", "n_seeds": 5, "var_seed": 6e-4,
                             "var_test": 3e-4, "cov_test": 1e-4}]),
        seeds=5, test_rows={"d": 1000}, pilot_test_rows={"d": 1000}, target_mde=0.025,
    ).iloc[0]  # fmt: skip
    assert not table["reachable"] and math.isnan(table["seeds_needed"])
    k, rows = int(table["test_rows_needed_seeds"]), table["test_rows_needed"]
    mde = design.design_mde(seeds=k, alpha=0.05, power=0.8, var_seed_train=4e-4, var_test=3e-4, cov_test=1e-4,
                            scale=1000 / rows)  # fmt: skip
    assert mde <= 0.025 + 1e-12


def _auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUROC along the last axis."""
    ranks = stats.rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    n1, n0 = pos.shape[-1], neg.shape[-1]
    return (ranks[..., :n1].sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


@pytest.mark.parametrize(
    ("n_pos", "n_neg", "pos_sd"),
    [(250, 250, 1.0), (150, 350, 1.5)],
    ids=["balanced-equal-variance", "prevalence-0.3-b-0.67"],
)
def test_hanley_mcneil_matches_a_bootstrap_of_binormal_scores(n_pos, n_neg, pos_sd):
    """Mean bootstrap variance over 20 simulated test sets (400 resamples each) within 10% of Hanley–McNeil.

    (With equal variances and 30% prevalence the exponential Q₁, Q₂ overstate the variance by about 20%: a
    conservative design. b = 1/1.5 is a typical binormal slope of diagnostic scores.)
    """
    auroc, rng = 0.8, np.random.default_rng(0)
    mu = math.sqrt(1 + pos_sd**2) * stats.norm.ppf(auroc)
    boot = []
    for _ in range(20):
        pos, neg = rng.normal(mu, pos_sd, n_pos), rng.normal(0, 1, n_neg)
        b_pos, b_neg = rng.integers(0, n_pos, (400, n_pos)), rng.integers(0, n_neg, (400, n_neg))
        boot.append(_auroc(pos[b_pos], neg[b_neg]).var(ddof=1))
    hm = design.hanley_mcneil_variance(auroc, n_pos, n_neg)
    assert np.mean(boot) == pytest.approx(hm, rel=0.10)


def test_the_signed_gap_variance_matches_a_whole_test_set_bootstrap():
    """Two groups resampled together (rows of the whole test set, as the evaluation's bootstrap does)."""
    rng, auroc, sd = np.random.default_rng(1), 0.8, 1.5
    mu = math.sqrt(1 + sd**2) * stats.norm.ppf(auroc)
    sizes = {"A": (400, 120), "B": (200, 100)}
    group = np.repeat(list(sizes), [n for n, _ in sizes.values()])
    label = np.concatenate([np.r_[np.ones(p), np.zeros(n - p)] for n, p in sizes.values()]).astype(bool)
    boot = []
    for _ in range(10):
        score = np.where(label, rng.normal(mu, sd, len(label)), rng.normal(0, 1, len(label)))
        gaps = []
        for _ in range(300):
            i = rng.integers(0, len(label), len(label))
            g, y, s = group[i], label[i], score[i]
            a, b = (_auroc(s[(g == x) & y][None], s[(g == x) & ~y][None])[0] for x in ("A", "B"))
            gaps.append(b - a)
        boot.append(np.var(gaps, ddof=1))
    assert np.mean(boot) == pytest.approx(design.signed_gap_variance(list(sizes.values()), auroc=auroc), rel=0.10)


def test_the_mde_has_its_power():
    """Per-seed differences drawn with the design's components, tested as gap_changes tests them.

    d_s = δ + t_s + u + w_s (seed part σ_t², shared test part c, own test part v − c), se² = S²/k + c,
    the contrast's own small-k test (p maximised over r ≥ r_low) at the row's level alpha/m: at δ = the
    design's MDE the rejection rate is at least 0.8 (within 3 binomial standard errors) and, the MDE being
    taken at r_low rather than the true r, at most 0.9.
    """
    pilot = pd.DataFrame([{**KEY, "epsilon": e, "estimand": "signed", "n_seeds": 4, "var_seed": 6e-4,
                           "var_test": 3e-4, "cov_test": 1e-4} for e in (1.0, 3.0, 10.0)])  # fmt: skip
    for k in (3, 6, 12):
        row = design.design_table(
            primary_rows=primary((1.0, 3.0, 10.0)), pilot=pilot, seeds=k, test_rows={"d": 500},
            pilot_test_rows={"d": 500},
        ).iloc[0]  # fmt: skip
        train, v, c, alpha = row["var_seed_train"], row["var_test"], row["cov_test"], row["row_alpha"]
        sims, rng = 1500, np.random.default_rng(2024 + k)
        d = (
            row["mde"]
            + rng.normal(0, math.sqrt(train), (sims, k))
            + rng.normal(0, math.sqrt(c), (sims, 1))
            + rng.normal(0, math.sqrt(v - c), (sims, k))
        )
        s2 = d.var(axis=1, ddof=1)
        p = [
            Contrast(float(m), math.sqrt(x / k + c), k - 1.0, k, True, x, v, c, ratio_bound(c, x, k)).p_value
            for m, x in zip(d.mean(axis=1), s2)
        ]
        rate = float(np.mean(np.asarray(p) < alpha))
        assert 0.8 - 3 * math.sqrt(0.8 * 0.2 / sims) <= rate <= 0.9, (k, rate)


def test_without_a_pilot_the_assumptions_are_hanley_mcneil():
    a = design.Assumptions(auroc=0.75, seed_sd=0.01, test_correlation=0.4)
    sizes = design.GroupSizes(test_rows=600, groups={"site": {"A": (400, 120), "B": (200, 100)}}, source="fixture")
    row = design.design_table(
        primary_rows=primary(), pilot=None, seeds=4, test_rows={"d": 1200}, groups={"d": sizes}, assumptions=a
    ).iloc[0]
    v = 2 * design.signed_gap_variance([(800, 240), (400, 200)], auroc=0.75)  # group sizes doubled with the test set
    assert row["source"] == "assumed" and row["var_test"] == pytest.approx(v)
    assert row["cov_test"] == pytest.approx(0.4 * v) and row["var_seed_train"] == pytest.approx(1e-4)
    three = design.GroupSizes(
        test_rows=600, groups={"site": {"A": (200, 60), "B": (200, 60), "C": (200, 60)}}, source=""
    )
    row = design.design_table(
        primary_rows=primary(), pilot=None, seeds=4, test_rows={"d": 600}, groups={"d": three}
    ).iloc[0]
    assert row["estimand"] == "tau2" and math.isnan(row["mde"]) and "run a pilot" in row["note"]


# --- the CLI on a fixture benchmark and pilot -------------------------------------------------------------


def fixture_benchmark(repo, folder):
    """A small benchmark (support2 x mlp, ε 1, 3, inf, 3 seeds; primary: sex and race) and its pilot tables."""
    config = {
        "name": "design-fixture",
        "datasets_dir": str(repo / "datasets"),
        "datasets": {"support2": {"primary": {"method": "dpsgd", "metric": "auroc", "attributes": ["sex", "race"]}}},
        "models": ["mlp"],
        "epsilons": [1, 3, "inf"],
        "seeds": [0, 1, 2],
        "evaluation": {"equivalence_margin": 0.03, "alpha": 0.05, "power": 0.8},
    }
    path = folder / "fixture.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    summary = folder / "results" / "summary"
    summary.mkdir(parents=True)
    base = {"dataset": "support2", "model": "mlp", "method": "dpsgd", "metric": "auroc", "n_seeds": 3, "df": 2.0}
    rows = []
    for eps, (s2, v, c) in {1.0: (9e-4, 6e-4, 2e-4), 3.0: (5e-4, 5e-4, 1.5e-4)}.items():
        rows.append({**base, "attribute": "sex", "epsilon": eps, "family": "primary", "estimand": "signed",
                     "var_seed": s2, "var_test": v, "cov_test": c, "se": math.sqrt(s2 / 3 + c)})  # fmt: skip
        rows.append({**base, "attribute": "race", "epsilon": eps, "family": "primary", "estimand": "tau2",
                     "var_seed": 4e-7, "var_test": 2e-7, "cov_test": 5e-8, "se": math.sqrt(4e-7 / 3 + 5e-8)})  # fmt: skip
        rows.append({**base, "attribute": "age_group", "epsilon": eps, "family": "exploratory", "estimand": "tau2",
                     "var_seed": 1e-6, "var_test": 1e-6, "cov_test": 1e-7, "se": 1e-3})  # fmt: skip
    pilot = summary / "gap_changes.csv"
    pd.DataFrame(rows).to_csv(pilot, index=False)
    groups = {"sex": {"female": (620, 420), "male": (746, 510)},
              "race": {"white": (1080, 740), "black": (210, 140), "hispanic": (46, 30), "unknown": (30, 20)}}  # fmt: skip
    pd.DataFrame(
        [{"dataset": "support2", "model": "mlp", "method": "dpsgd", "epsilon": "inf", "seed": 0, "attribute": a,
          "group": g, "n": n, "n_positive": p, "flagged": n < 30, "auroc": 0.8}
         for a, gs in groups.items() for g, (n, p) in gs.items()]
    ).to_csv(summary / "subgroups.csv", index=False)  # fmt: skip
    return path, pilot


def table_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("support2  ")]


def test_the_cli_prints_one_line_per_primary_row(repo, tmp_path, capsys):
    path, pilot = fixture_benchmark(repo, tmp_path)
    assert main(["design", str(path), "--pilot", str(pilot)]) == 0
    out = capsys.readouterr().out
    lines = table_lines(out)
    assert len(lines) == 4, out  # (sex, race) x (ε 1, 3); the exploratory age_group rows are not primary
    assert all("pilot" in line and " 1366 " in line for line in lines)  # test rows: the pilot's sex groups summed
    assert sum("signed" in line for line in lines) == 2 and sum("tau2" in line for line in lines) == 2
    assert "primary family m = 4" in out and "alpha/m = 0.0125" in out
    assert "can the primary family answer its question: NO" in out
    # more seeds: the MDE falls; the seeds a row needs do not depend on the design's seeds
    assert main(["design", str(path), "--pilot", str(pilot), "--seeds", "12"]) == 0
    more = table_lines(capsys.readouterr().out)
    mde = lambda line: float(line.split()[10])  # noqa: E731
    assert all(mde(b) < mde(a) for a, b in zip(lines, more))
    assert [a.split()[11:] for a in lines] == [b.split()[11:] for b in more]


def test_the_cli_without_a_pilot_states_its_assumptions(repo, tmp_path, capsys):
    path, _ = fixture_benchmark(repo, tmp_path)
    args = ["design", str(path), "--no-pilot", "-d", str(tmp_path), "--test-rows", "support2=2000", "--seed-sd", "0.01"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = table_lines(out)
    assert len(lines) == 4 and all("assumed" in line and " 2000 " in line for line in lines)
    assert "Hanley & McNeil" in out and "seed sd of a gap change 0.01" in out and "c = 0.5·v" in out
    # sex: the subgroups' two groups (scaled to 2000 rows); race has four usable groups: a τ² row needs a pilot
    assert all(float(line.split()[10]) > 0 for line in lines if " sex " in line)
    assert all(line.split()[10] == "?" for line in lines if " race " in line) and "run a pilot" in out
    assert "can the primary family answer its question: NO" in out


def test_the_cli_refuses_a_pilot_without_the_variance_columns(repo, tmp_path, capsys):
    path, pilot = fixture_benchmark(repo, tmp_path)
    old = pd.read_csv(pilot).drop(columns=["var_seed", "cov_test"])
    old.to_csv(tmp_path / "old.csv", index=False)
    assert main(["design", str(path), "--pilot", str(tmp_path / "old.csv")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {tmp_path / 'old.csv'}: lacks columns ['var_seed', 'cov_test']"
    )
    assert captured.out == ""
    assert main(["design", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.yaml" in err[0]


def test_the_cli_gives_back_the_se_and_mde_of_a_pilot_gap_changes_wrote(repo, tmp_path, capsys):
    """A pilot from gap_changes itself, with the benchmark's own statistics options (primary family: dpsgd's
    sex gap at ε 1 and 3, m = 2; alpha 0.1, power 0.9; dpsgd_f exploratory): at the pilot's 5 seeds and
    1000 test rows the design's se and MDE are the pilot rows' own."""
    config = {
        "name": "real-pilot",
        "datasets_dir": str(repo / "datasets"),
        "datasets": {
            "support2": {
                "methods": ["dpsgd", "dpsgd_f"],
                "mitigation": {"attribute": "sex"},
                "primary": {"attributes": ["sex"]},
            }
        },
        "models": ["mlp"],
        "epsilons": [1, 3, "inf"],
        "seeds": [0, 1, 2, 3, 4],
        "evaluation": {"alpha": 0.1, "power": 0.9},
    }
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    tables = [table_with({1.0: -0.03, 3.0: 0.01}, seed_sd=0.02, method=m) for m in ("dpsgd", "dpsgd_f")]
    est = pd.concat([t[0] for t in tables]).assign(dataset="support2")
    reps = pd.concat([t[1] for t in tables]).assign(dataset="support2")
    pilot = gap_changes(estimates=est, replicates=reps, **statistics_options(config))
    assert set(design.PILOT_COLUMNS) <= set(GAP_CHANGE_COLUMNS)
    primary_rows = pilot[pilot["family"] == "primary"].reset_index(drop=True)
    assert len(primary_rows) == 2 and (primary_rows["method"] == "dpsgd").all()
    assert (primary_rows["var_seed"] > primary_rows["var_test"] - primary_rows["cov_test"]).all()  # σ_t² > 0
    summary = tmp_path / "results" / "summary"
    summary.mkdir(parents=True)
    pilot.to_csv(summary / "gap_changes.csv", index=False)
    pd.DataFrame(
        [{"dataset": "support2", "model": "mlp", "method": "dpsgd", "epsilon": "inf", "seed": 0, "attribute": "sex",
          "group": g, "n": n, "n_positive": p} for g, n, p in (("female", 600, 180), ("male", 400, 120))]
    ).to_csv(summary / "subgroups.csv", index=False)  # fmt: skip

    table = design_benchmark(path, directory=tmp_path).table
    assert list(table["epsilon"]) == list(primary_rows["epsilon"]) and (table["source"] == "pilot").all()
    assert list(table["seeds"]) == list(primary_rows["n_seeds"]) and (table["test_rows"] == 1000).all()
    np.testing.assert_allclose(table["se"], primary_rows["se"], rtol=1e-12)
    np.testing.assert_allclose(table["df"], primary_rows["df"], rtol=1e-12)
    np.testing.assert_allclose(table["mde"], primary_rows["mde"], rtol=1e-12)
    assert (table["row_alpha"] == 0.1 / 2).all()
    assert main(["design", str(path), "-d", str(tmp_path)]) == 0
    lines = table_lines(capsys.readouterr().out)
    assert [line.split()[9:11] for line in lines] == [
        [f"{r['se']:.4f}", f"{r['mde']:.4f}"] for r in primary_rows.to_dict("records")
    ]


def test_a_pilot_with_a_negative_shared_covariance_gives_back_its_own_se():
    """The contrast floors c̄ at 0; the design must floor it the same way before deriving σ_t² (review finding)."""
    row = {"var_seed": 5e-4, "var_test": 3e-4, "cov_test": -5e-5, "n_seeds": 3, "estimand": "signed"}
    parts = design.components_from_pilot(row, assumptions=design.Assumptions())
    pilot_se = math.sqrt(row["var_seed"] / 3 + max(row["cov_test"], 0.0))  # se² = S²/k + c̄ floored
    comps = {k: parts[k] for k in ("var_seed_train", "var_test", "cov_test")}
    assert design.design_se(seeds=3, **comps) == pytest.approx(pilot_se, rel=1e-12)
