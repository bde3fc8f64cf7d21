"""Standard errors, the paired fold test, the paired bootstrap, and the seeds
table built from them."""
import json
import math

import numpy as np
import pytest

from minisiamese import report, stats


def test_mean_se_is_the_sample_sd_over_root_n():
    v = [0.70, 0.72, 0.68, 0.75, 0.71, 0.69, 0.74, 0.73, 0.66, 0.72]
    mean, se = stats.mean_se(v)
    by_hand = math.sqrt(sum((x - sum(v) / 10) ** 2 for x in v) / 9) / math.sqrt(10)
    assert mean == pytest.approx(sum(v) / 10) and se == pytest.approx(by_hand)
    assert se > np.std(v) / math.sqrt(10)                      # not the population SD
    assert math.isnan(stats.mean_se([0.5])[1])
    with pytest.raises(ValueError, match="no values"):
        stats.mean_se([])


def test_paired_t_by_hand():
    a = [0.71, 0.74, 0.69, 0.70, 0.75]
    b = [0.70, 0.70, 0.70, 0.66, 0.72]
    d = [x - y for x, y in zip(a, b)]                            # 0.01, 0.04, -0.01, 0.04, 0.03
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    t = stats.paired_t(a, b)
    assert t["diff"] == pytest.approx(mean) and t["t"] == pytest.approx(mean / (sd / math.sqrt(5)))
    assert t["df"] == 4 and t["better"] == 4 and t["n"] == 5
    assert math.isnan(stats.paired_t([1, 2], [0, 1])["t"])      # every difference equal: no spread, no t
    with pytest.raises(ValueError, match="equal-length"):
        stats.paired_t([1, 2], [1])


def test_t_critical_values_and_their_fallback():
    assert stats.t_critical(9) == 2.262 and stats.t_critical(12) == 2.179
    assert stats.t_critical(25) == 2.086 and stats.t_critical(500) == 2.042     # the next smaller tabled df
    with pytest.raises(ValueError, match="at least 1 degree"):
        stats.t_critical(0)


def test_bootstrap_interval_covers_the_difference_and_shrinks_with_more_pairs():
    rng = np.random.default_rng(0)
    widths = []
    for n in (200, 3200):
        a = (rng.random(n) < 0.75).astype(float)
        b = (rng.random(n) < 0.70).astype(float)
        d, low, high = stats.bootstrap_diff(a, b, rounds=2000, seed=1)
        assert low < d < high and d == pytest.approx(a.mean() - b.mean())
        widths.append(high - low)
    assert widths[1] < widths[0] / 2                               # about 1/sqrt(16) as wide
    same = rng.random(100)
    assert stats.bootstrap_diff(same, same, rounds=500) == (0.0, 0.0, 0.0)


def fake_run(acc, folds, probs):
    leak = {"folds": [{"accuracy": f, "auc": f + 0.05} for f in folds], "accuracy_mean": float(np.mean(folds)),
            "auc_mean": float(np.mean(folds)) + 0.05, "pairs": 100}
    return {"accuracy": acc, "tuned": {"threshold": 0.5, "accuracy": acc, "precision": acc, "recall": acc},
            "auc": acc + 0.05, "oneshot": acc / 2, "recall": acc, "precision": acc, "parameters": 10,
            "epochs_run": 10, "best_epoch": 7,
            "wall_seconds": 600, "protocol": "unrestricted", "test_probs": probs,
            "view2": {**leak, "leak_free": leak}}


def test_seeds_table_and_paired_comparisons(tmp_path):
    rng = np.random.default_rng(3)
    base_folds = rng.uniform(0.65, 0.72, 10)
    runs = tmp_path / "seeds"
    for seed in (0, 1):
        for name, shift in (("baseline", 0.0), ("best", 0.05)):
            probs = [0.9 if i < 50 else 0.1 for i in range(100)]              # 50 same, then 50 different
            wrong = rng.choice(100, 30 if name == "baseline" else 15, replace=False)
            for i in wrong:
                probs[i] = 1 - probs[i]
            d = runs / report.seed_run_name(name, seed)
            d.mkdir(parents=True)
            res = fake_run(1 - len(wrong) / 100, list(base_folds + shift + 0.01 * seed), probs)
            (d / "results.json").write_text(json.dumps(res))
    rows = report.collect_seeds(str(runs), str(tmp_path / "kept"))
    assert list(rows) == ["baseline", "best"] and list(rows["best"]) == [0, 1]
    assert sorted(p.name for p in (tmp_path / "kept").iterdir())[0] == "baseline-s0.json"   # kept for git
    table = "\n".join(report.seeds_markdown(rows))
    assert "| best | unrestricted | 0, 1 | cpu | 0.850 ± 0.000 | 0.850 ± 0.000 |" in table
    se = np.std(base_folds, ddof=1) / np.sqrt(10)                  # of the seed-averaged folds: base + 0.055
    assert f"| {np.mean(base_folds) + 0.055:.3f} ± 0.007 (SE {se:.3f}) |" in table
    on_gpu = {**rows, "best": {**rows["best"], 1: {**rows["best"][1], "device": "gpu"}}}
    assert "| best | unrestricted | 0, 1 | cpu, gpu | 0.850" in "\n".join(report.seeds_markdown(on_gpu))
    line = next(x for x in table.splitlines() if x.startswith("- **best** against **baseline**"))
    assert "leak-free View 2 accuracy +0.050" in line and "better in 10 of 10 folds" in line
    assert "test accuracy at each run's validation threshold +0.150, 95 % bootstrap interval [+" in line
    assert report.collect_seeds(str(tmp_path / "gone"), str(tmp_path / "kept")) == rows   # survives without runs/


def test_a_row_without_view2_gets_the_bootstrap_and_says_it_has_no_fold_test():
    probs = [0.9 if i < 50 else 0.1 for i in range(100)]
    runs = {"baseline": {0: fake_run(0.7, [0.7] * 10, probs)}, "x-gpu": {0: fake_run(0.8, [0.8] * 10, probs)}}
    del runs["x-gpu"][0]["view2"]
    table = "\n".join(report.seeds_markdown(runs))
    assert "| x-gpu | unrestricted | 0 | cpu | 0.800 | 0.800 | 0.850 | 0.400 | n/a | n/a |" in table
    line = next(x for x in table.splitlines() if x.startswith("- **x-gpu** against **baseline**"))
    assert "no paired fold test (a run without View 2); test accuracy at each run's validation threshold +0.000" in line


def test_a_preset_is_also_compared_with_the_one_it_changes_one_setting_of():
    """bn512w is bn512 with another stop rule: besides baseline and best, the
    table pairs it with bn512; no other preset is compared with bn512."""
    probs = [0.9 if i < 50 else 0.1 for i in range(100)]
    runs = {name: {0: fake_run(acc, [acc] * 5 + [acc + 0.02] * 5, probs)}
            for name, acc in (("baseline", 0.68), ("bn512", 0.76), ("bn512w", 0.77))}
    lines = report.comparison_lines(runs)
    against = [x.split("**")[1] + " / " + x.split("**")[3] for x in lines]
    assert against == ["bn512 / baseline", "bn512w / baseline", "bn512w / bn512"]
    assert "leak-free View 2 accuracy +0.010" in lines[-1] and "(seeds [0] vs [0])" in lines[-1]
    assert report.comparison_lines(runs, pairs=()) == lines[:2]


def test_seed_curves_figure_is_drawn_and_linked_only_with_histories(tmp_path):
    runs = {"baseline": {0: fake_run(0.7, [0.7] * 10, [0.5] * 4), 1: fake_run(0.7, [0.7] * 10, [0.5] * 4)}}
    assert not report.plot_seed_curves(runs, str(tmp_path / "none.png")) and not (tmp_path / "none.png").exists()
    assert "seeds.png" not in "\n".join(report.seeds_markdown(runs, "figures/seeds.png"))
    for seed, res in runs["baseline"].items():
        res["history"] = [{"epoch": e, "val_loss": 1 / e, "val_accuracy": 0.5 + e / 100 + seed / 50,
                           "val_auc": 0.6 + e / 100} for e in range(1, 6)]
    assert report.plot_seed_curves(runs, str(tmp_path / "seeds.png")) and (tmp_path / "seeds.png").stat().st_size
    assert "](figures/seeds.png)" in "\n".join(report.seeds_markdown(runs, "figures/seeds.png"))


def test_view2_fold_without_both_classes_has_no_auc_instead_of_a_crash():
    """A subset of View 2 (the leak-free pairs of a small file) can leave a fold
    with one class: its AUC is None and the AUC figures use the other folds."""
    from minisiamese.evaluate import _fold_summary
    labels = np.array([1, 0, 1, 0, 1, 1, 1, 0, 0, 1], dtype=float)
    probs = np.array([0.9, 0.2, 0.7, 0.4, 0.8, 0.6, 0.3, 0.1, 0.5, 0.95])
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])                 # fold 1: same-person pairs only
    res = _fold_summary(labels, probs, fold)
    assert res["folds"][1]["auc"] is None and res["folds"][0]["auc"] == 1.0
    assert res["auc_mean"] == pytest.approx((1.0 + res["folds"][2]["auc"]) / 2)
    assert len([f for f in res["folds"] if f["accuracy"] is not None]) == 3
    assert report._pm(res, "auc").startswith(f"{res['auc_mean']:.3f} ± ")
