"""The audit and agreement statistics (labeling/estimates.py): coverage on simulated finite populations,
edge cases, kappa against hand-computed values, and CROWDLAB consensus on simulated experts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import betainc

from labeling.estimates import (
    Band,
    ClassAgreement,
    Interval,
    Judgement,
    PairAgreement,
    class_agreement,
    cohen_kappa,
    consensus,
    pair_agreement,
    proportion,
    verdict_false_wrong,
    wrong_left,
)


def _simulate(sizes, rates, audit, seeds):
    """For each seed: a finite population per band with a fixed number of wrong labels, an audit drawn
    without replacement, the estimate, and the true wrong count left among the unaudited images."""
    runs = []
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        bands, truth = [], 0
        for h, (size, rate) in enumerate(zip(sizes, rates, strict=True)):
            population = np.zeros(size, dtype=bool)
            population[rng.choice(size, round(size * rate), replace=False)] = True
            audited = rng.choice(size, audit, replace=False)
            wrong = int(population[audited].sum())
            truth += int(population.sum()) - wrong
            bands.append(Band(f"band {h}", unreviewed=size - audit, audited=audit, wrong=wrong))
        runs.append((wrong_left(bands, seed=seed), truth))
    return runs


def test_wrong_left_covers_the_realised_count_in_a_stratified_audit():
    runs = _simulate(sizes=(200, 600, 1200), rates=(0.4, 0.08, 0.01), audit=40, seeds=200)
    covered = sum(result.low <= truth <= result.high for result, truth in runs)
    assert covered / len(runs) >= 0.90
    errors = np.array([result.estimate - truth for result, truth in runs])
    mean_truth = np.mean([truth for _, truth in runs])
    # Jeffreys adds half a wrong label per band, which a 40-image audit of a 1% band turns into ~+13 images:
    # the estimate leans cautious, but stays within a fifth of the truth on average (measured: +15%)
    assert abs(errors.mean()) < 0.2 * mean_truth
    assert np.abs(errors).mean() < 0.3 * mean_truth


def test_wrong_left_keeps_the_binomial_spread_when_most_of_a_band_was_audited():
    # With 40 of 60 images audited, what is left is mostly the luck of which 20 are wrong: an interval on the
    # rate alone (rate x unreviewed) covers only ~84% here and ~49% for bands of 50, so this fails for it
    runs = _simulate(sizes=(60, 80, 100), rates=(0.4, 0.2, 0.1), audit=40, seeds=200)
    covered = sum(result.low <= truth <= result.high for result, truth in runs)
    assert covered / len(runs) >= 0.90


def test_wrong_left_is_nearly_unbiased_with_large_audits():
    runs = _simulate(sizes=(2000, 6000, 12000), rates=(0.4, 0.08, 0.01), audit=400, seeds=40)
    errors = np.array([result.estimate - truth for result, truth in runs])
    assert abs(errors.mean()) < 0.03 * np.mean([truth for _, truth in runs])


def test_wrong_left_shape_and_reproducibility():
    bands = [Band("high", 100, 20, 5), Band("low", 500, 20, 0)]
    first = wrong_left(bands, level=0.9, seed=3)
    assert first == wrong_left(bands, level=0.9, seed=3)
    assert first.level == 0.9 and "Jeffreys" in first.method
    assert len(first.by_band) == 2
    for band in (first, *first.by_band):
        assert band.low <= band.estimate <= band.high
    assert first.estimate == pytest.approx(sum(b.estimate for b in first.by_band))
    # posterior predictive mean of a band: unreviewed x (wrong + 0.5) / (audited + 1)
    assert first.by_band[0].estimate == pytest.approx(100 * 5.5 / 21, rel=0.03)
    assert first.by_band[1].estimate == pytest.approx(500 * 0.5 / 21, rel=0.05)


def test_wrong_left_band_with_nothing_unreviewed_adds_zero():
    result = wrong_left([Band("done", 0, 30, 12), Band("open", 50, 30, 3)])
    assert result.by_band[0] == Interval(0.0, 0.0, 0.0)
    assert (result.estimate, result.low, result.high) == tuple(vars(result.by_band[1]).values())


def test_wrong_left_unaudited_band_is_honestly_wide():
    result = wrong_left([Band("never audited", 200, 0, 0)])
    assert result.estimate == pytest.approx(100, rel=0.05)  # Beta(0.5, 0.5) has mean 1/2
    assert result.low <= 1 and result.high >= 199  # nothing is known: the interval spans nearly 0..200


def test_wrong_left_no_bands_and_bad_input():
    empty = wrong_left([])
    assert (empty.estimate, empty.low, empty.high, empty.by_band) == (0.0, 0.0, 0.0, ())
    with pytest.raises(ValueError):
        wrong_left([Band("b", 10, 5, 6)])
    with pytest.raises(ValueError):
        wrong_left([Band("b", -1, 5, 1)])
    with pytest.raises(ValueError):
        wrong_left([Band("b", 10, 5, 1)], level=1.0)


def test_proportion_edges():
    assert proportion(0, 0) is None
    none_wrong = proportion(0, 20)
    assert none_wrong.estimate == 0 and none_wrong.low == 0 and 0.02 < none_wrong.high < 0.15
    all_wrong = proportion(20, 20)
    assert all_wrong.estimate == 1 and all_wrong.high == 1 and 0.85 < all_wrong.low < 0.98
    with pytest.raises(ValueError):
        proportion(3, 2)


def test_proportion_known_value_and_contains_estimate():
    # Jeffreys interval for 10 of 50: the bounds are where the Beta(10.5, 40.5) posterior's CDF (checked with the
    # regularised incomplete beta function, not the quantile function used inside) reaches 2.5% and 97.5%
    ten = proportion(10, 50)
    assert ten.estimate == 0.2
    assert betainc(10.5, 40.5, ten.low) == pytest.approx(0.025)
    assert betainc(10.5, 40.5, ten.high) == pytest.approx(0.975)
    assert ten.low == pytest.approx(0.1077, abs=1e-4) and ten.high == pytest.approx(0.3258, abs=1e-4)
    for level in (0.9, 0.95, 0.99):
        for trials in range(1, 41):
            for successes in range(trials + 1):
                interval = proportion(successes, trials, level)
                assert 0 <= interval.low <= interval.estimate <= interval.high <= 1


def test_cohen_kappa():
    assert cohen_kappa(["cat", "dog", "cat"], ["cat", "dog", "cat"]) == 1.0
    # by hand: observed agreement 7/10; chance (0.4*0.4 + 0.3*0.3 + 0.3*0.3) = 0.34; (0.7-0.34)/(1-0.34) = 6/11
    first = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"]
    second = ["a", "a", "a", "b", "b", "b", "c", "c", "c", "a"]
    assert cohen_kappa(first, second) == pytest.approx(6 / 11)
    assert cohen_kappa(["a"], ["a"]) is None
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # one answer throughout: kappa is 0/0
    assert cohen_kappa(["a", "a"], ["b", "b"]) == 0.0
    with pytest.raises(ValueError):
        cohen_kappa(["a", "b"], ["a"])


def test_pair_agreement_groups_both_orders():
    judgements = [
        Judgement(1, "bo", "cat", "al", "cat"),
        Judgement(2, "al", "dog", "bo", "dog"),
        Judgement(3, "al", "cat", "bo", "dog"),
        Judgement(4, "bo", "cat", "al", ""),
        Judgement(5, "cy", "dog", "al", "dog"),
    ]
    pairs = pair_agreement(judgements)
    assert [(p.first, p.second) for p in pairs] == [("al", "bo"), ("al", "cy")]
    al_bo = pairs[0]
    assert (al_bo.items, al_bo.agreed) == (4, 2)
    # answers in name order: al = cat, dog, cat, ""; bo = cat, dog, dog, cat
    assert al_bo.kappa == pytest.approx(cohen_kappa(["cat", "dog", "cat", ""], ["cat", "dog", "dog", "cat"]))
    assert pairs[1] == PairAgreement("al", "cy", 1, 1, None)


def test_class_agreement_one_against_the_rest():
    judgements = [
        Judgement(1, "al", "cat", "bo", "cat"),
        Judgement(2, "al", "cat", "bo", "dog"),
        Judgement(3, "al", "dog", "bo", "dog"),
        Judgement(4, "al", "dog", "bo", "dog"),
        Judgement(5, "al", "", "bo", "bird"),
    ]
    result = class_agreement(judgements)
    assert [c.label for c in result] == ["bird", "cat", "dog"]
    cat = result[1]
    assert cat.items == 2
    # by hand: al says cat y y n n n, bo y n n n n; observed 4/5, chance 0.4*0.2 + 0.6*0.8 = 0.56 -> 0.24/0.44
    assert cat.kappa == pytest.approx(6 / 11)
    # dog: al n n y y n, bo n y y y n; observed 4/5, chance 0.4*0.6 + 0.6*0.4 = 0.48 -> 0.32/0.52
    assert result[2] == ClassAgreement("dog", 3, pytest.approx(8 / 13))
    assert result[0] == ClassAgreement("bird", 1, 0.0)  # only one expert ever said bird: no agreement beyond chance
    assert class_agreement([]) == []


def _experts(seed=0, items=300):
    """Three experts of accuracy 0.95, 0.9, 0.6 on 4 classes, each answering ~85% of the items, and a model
    that is right ~75% of the time; the class list also holds a class nobody uses."""
    rng = np.random.default_rng(seed)
    classes = ["ant", "bee", "cat", "dog", "never used"]
    truth = rng.integers(0, 4, items)
    answers: dict[int, dict[str, str]] = {item: {} for item in range(items)}
    for user, accuracy in (("ann", 0.95), ("ben", 0.9), ("cal", 0.6)):
        for item in range(items):
            if rng.random() < 0.15:
                continue
            right = rng.random() < accuracy
            label = truth[item] if right else (truth[item] + rng.integers(1, 4)) % 4
            answers[item][user] = classes[label]
    pred_probs = {}
    for item in range(items):
        guess = truth[item] if rng.random() < 0.75 else rng.integers(0, 4)
        probs = {name: 0.1 for name in classes[:4]}
        probs[classes[guess]] = 0.7
        pred_probs[item] = probs
    return answers, pred_probs, classes, [classes[t] for t in truth]


def test_consensus_crowdlab_finds_truth_and_the_weak_expert():
    answers, pred_probs, classes, truth = _experts()
    answers[0] = {"ann": "", "ben": "", "cal": ""}  # deleted by everyone: no label, left out
    answers[1]["ann"] = ""  # a delete answer is no answer
    result = consensus(answers, pred_probs, classes)
    assert 0 not in result.labels and 0 not in result.quality
    labeled = {item for item, by_user in answers.items() if set(by_user.values()) - {""}}
    assert set(result.labels) == set(result.quality) == labeled
    accuracy = np.mean([result.labels[item] == truth[item] for item in result.labels])
    assert accuracy >= 0.9
    assert set(result.annotator_quality) == {"ann", "ben", "cal"}
    assert min(result.annotator_quality, key=result.annotator_quality.get) == "cal"
    assert all(0.0 <= q <= 1.0 for q in result.quality.values())
    # the consensus should be less sure where the experts split
    split = [item for item, by_user in answers.items() if len(set(by_user.values()) - {""}) > 1]
    unanimous = [
        item for item, by_user in answers.items() if item and len(by_user) == 3 and len(set(by_user.values())) == 1
    ]
    assert np.mean([result.quality[i] for i in split]) < np.mean([result.quality[i] for i in unanimous])


def test_consensus_falls_back_with_one_annotator():
    answers = {1: {"ann": "cat"}, 2: {"ann": "dog"}, 3: {"ann": ""}}
    result = consensus(answers, {}, ["cat", "dog"])
    assert result.labels == {1: "cat", 2: "dog"}
    assert result.quality == {1: 1.0, 2: 1.0}
    assert result.annotator_quality == {}


def test_consensus_falls_back_when_every_vote_ties():
    # cleanlab 2.9.0 crashes here (its last tie-break averages over no untied items); the fallback breaks ties
    # by the model, whose unlisted classes share the leftover mass: dog gets (1 - 0.3) / 2 = 0.35 > cat's 0.3
    answers = {1: {"ann": "cat", "ben": "dog"}, 2: {"ann": "bird", "ben": "cat"}}
    result = consensus(answers, {1: {"cat": 0.3}}, ["cat", "dog", "bird"])
    assert result.labels == {1: "dog", 2: "cat"}  # item 2 has no model output: the earlier listed class wins
    assert result.quality == {1: 0.5, 2: 0.5}
    assert result.annotator_quality == {}


def test_consensus_accepts_labels_outside_the_class_list_and_empty_input():
    answers = {1: {"ann": "cat", "ben": "cat"}, 2: {"ann": "fox", "ben": "fox"}, 3: {"ann": "cat", "ben": "fox"}}
    result = consensus(answers, {1: {"cat": 0.9}, 2: {"cat": 0.1}}, ["cat", "dog"])
    assert result.labels[1] == "cat" and result.labels[2] == "fox"
    # item 3 ties on every count cleanlab looks at, which it would settle with np.random: the earlier class wins,
    # every time
    assert result.labels[3] == "cat"
    assert all(consensus(answers, {1: {"cat": 0.9}, 2: {"cat": 0.1}}, ["cat", "dog"]) == result for _ in range(5))
    assert consensus({}, {}, ["cat"]) == consensus({1: {"ann": ""}}, {}, ["cat"])
    assert consensus({}, {}, ["cat"]).labels == {}


def test_a_band_whose_audit_found_nothing_adds_nothing_to_the_lower_bound():
    # bench/audit.py's case: the wrong labels left all sit in the top band; three large bands audited clean.
    clean = [Band("low", 773, 50, 0), Band("middle", 444, 50, 0), Band("high", 197, 50, 0)]
    top = Band("top", 33, 50, 22)
    together = wrong_left([*clean, top])
    alone = wrong_left([top])
    assert together.low == alone.low  # the clean bands' phantom counts no longer lift it
    assert together.high > alone.high + 20  # but they stay in the upper bound: 0 of 50 is not proof of none
    assert [band.low for band in together.by_band[:3]] == [0.0, 0.0, 0.0]


def test_a_band_with_an_uncertain_verdict_counts_it_by_its_probability():
    sure, unsure = wrong_left([Band("b", 500, 40, 1.0)]), wrong_left([Band("b", 500, 40, 0.3)])
    assert unsure.estimate < sure.estimate
    assert unsure.low == 0.0 or unsure.low < sure.low


def test_verdicts_that_misjudge_right_labels_are_allowed_for():
    # Three bands, their labels right but for a few; the audit's verdicts call a right label wrong 3% of the time.
    rng = np.random.default_rng(11)
    sizes, rates, drawn, false_wrong = (1500, 500, 100), (0.0, 0.01, 0.2), 40, 0.03
    held = {True: 0, False: 0}
    for _ in range(150):
        bands, truth = {True: [], False: []}, 0
        for size, rate in zip(sizes, rates, strict=True):
            wrong_images = rng.random(size) < rate
            audited = rng.choice(size, drawn, replace=False)
            said_wrong = wrong_images[audited] | (rng.random(drawn) < false_wrong)
            left = np.delete(wrong_images, audited)
            truth += int(left.sum())
            for modelled in (True, False):
                f = false_wrong if modelled else 0.0
                bands[modelled].append(Band("b", size - drawn, drawn, int(said_wrong.sum()), f))
        for modelled in (True, False):
            found = wrong_left(bands[modelled], draws=4000, seed=int(rng.integers(1 << 30)))
            held[modelled] += found.low <= truth <= found.high
    assert held[True] >= 0.9 * 150
    assert held[False] < held[True]  # read as certain, the misjudged verdicts lift the interval off the truth


def test_the_chance_of_a_false_verdict_follows_how_often_experts_disagree():
    assert verdict_false_wrong(0.0, 10) == 0.0
    one = verdict_false_wrong(0.28, 10, single=True)
    assert one == pytest.approx(1 - 0.72**0.5)
    assert verdict_false_wrong(0.28, 10) == pytest.approx(one * one / 9)
    assert verdict_false_wrong(0.28, 1) == 0.0
