"""Estimates for audits and second opinions: how many wrong labels are left, and how far experts agree.

Pure statistics (no database, no I/O); the callers count things and this module says what the counts mean.

- wrong_left: how many wrong labels remain among the images nobody has reviewed yet. An audit samples
  images from each score band and an expert gives a verdict on each; the bands differ a lot in how often
  their labels are wrong (the model's score is built to separate them), so each band is estimated on its own
  and the bands are added up (stratification: one pooled rate would weigh a band by how many of its
  images happened to be audited, not by how many it holds). Per band the wrong rate gets a Jeffreys
  Beta(0.5, 0.5) prior updated by the audit; then, since the thing asked about is a count of real images,
  not a rate, the band's unreviewed images are drawn binomially from that rate (the posterior predictive).
  The interval therefore holds both the uncertainty about the rate and the luck of which images are wrong.
  Monte Carlo draws make the sum over bands exact without normal approximations, which fail for the small,
  near-zero counts audits produce. Jeffreys rather than a flat prior because it is the usual
  "uninformative" choice with good frequentist coverage for binomial rates; its price is a slight upward
  pull in bands whose audit found no or few wrong labels (half a wrong label is added to every band),
  so the estimate leans to the cautious side there. Verdicts are experts' answers and can be wrong too: a
  band's false_wrong (the chance that a verdict calls a right label wrong) enters the likelihood, so a
  band's wrong verdicts are read as "a wrong rate p, or a right label misjudged" (q = p + (1 - p) f).
  Without it, one mistaken verdict in a large clean band (one verdict there stands for 15 images) lifted
  the lower bound above the truth.
- verdict_false_wrong: that chance, estimated from how often two experts disagree (see its docstring).
- proportion: the Jeffreys interval for a single rate (e.g. how often an audited band was wrong), the same
  prior as above so that the numbers shown side by side agree; it keeps good coverage at 0 and n, where
  the textbook Wald interval collapses to a point.
- cohen_kappa, pair_agreement, class_agreement: Cohen's kappa (scikit-learn's), agreement corrected for
  what two raters would agree on by chance given how often each uses each answer, for each pair of experts
  and, one class against the rest, for each class. Raw agreement alone looks good whenever one class dominates.
- consensus: cleanlab's CROWDLAB, which weighs each expert's answer by how well that expert agrees with the
  others and with the model, and the model by how well it agrees with the experts. It is published, tested
  and beats majority vote when experts differ in skill; with too little overlap between experts to rate them
  it cannot run, and a majority vote stands in (see consensus).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

WRONG_LEFT_METHOD = (
    "Stratified Bayesian posterior predictive: per score band a Jeffreys Beta(0.5, 0.5) prior on the wrong rate, "
    "updated by the band's audit, and binomial draws for its unreviewed images, summed over bands; a band whose "
    "audit found no wrong label adds nothing to the lower bound."
)
JEFFREYS = 0.5  # the Beta(0.5, 0.5) prior's pseudo-counts on each side
TIE_NUDGE = 1e-9  # added to earlier classes' probabilities so that cleanlab's vote ties break the same way


@dataclass(frozen=True)
class Band:
    """One score band of an audit: how many images it holds now unreviewed, and what the audit found in it."""

    name: str  # e.g. "score 0.80–1.00"
    unreviewed: int  # images of the band still unreviewed now (audited images excluded)
    audited: int  # audit items of the band with a verdict
    wrong: float  # of those, how many the verdicts say were labeled wrong (whole, but any count works)
    # how likely one of its verdicts calls a right label wrong (experts err; see verdict_false_wrong)
    false_wrong: float = 0.0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a central interval around it."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class WrongLeft:
    """Estimated wrong labels among the unreviewed images, with a central interval."""

    estimate: float
    low: float
    high: float
    level: float  # e.g. 0.95
    method: str  # one sentence naming the estimator
    by_band: tuple[Interval, ...]  # same order as the bands given


@dataclass(frozen=True)
class PairAgreement:
    """How far two experts agree over the items both answered."""

    first: str  # the two names sorted: first < second
    second: str
    items: int
    agreed: int  # items where both gave the same answer
    kappa: float | None  # None when undefined (fewer than 2 items, or one answer used by both throughout)


@dataclass(frozen=True)
class ClassAgreement:
    """How far experts agree on one class against all the others."""

    label: str
    items: int  # judgements where either expert answered this label
    kappa: float | None


@dataclass(frozen=True)
class Judgement:
    """Two experts' answers on one item: the label each says the image shows ("" = delete it)."""

    item: int
    first_user: str
    first_answer: str
    second_user: str
    second_answer: str


@dataclass(frozen=True)
class Consensus:
    """The experts' consensus label per item, how sure it is, and how good each expert looks."""

    labels: dict[int, str]  # item -> consensus label
    quality: dict[int, float]  # item -> CROWDLAB consensus_quality_score
    annotator_quality: dict[str, float]  # annotator -> CROWDLAB annotator_quality


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, not {level}")


def _check_band(band: Band) -> None:
    if min(band.unreviewed, band.audited, band.wrong) < 0 or band.wrong > band.audited:
        raise ValueError(
            f"band {band.name!r}: counts must be non-negative and wrong <= audited "
            f"(unreviewed={band.unreviewed}, audited={band.audited}, wrong={band.wrong})"
        )


def _central(values: np.ndarray, level: float) -> tuple[float, float]:
    # inverted_cdf returns values the draws actually took, so a count's interval has whole-number ends
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def wrong_left(bands: Sequence[Band], level: float = 0.95, draws: int = 20_000, seed: int = 0) -> WrongLeft:
    """Estimate of the wrong labels among the bands' unreviewed images, with a central `level` interval.

    Per band: wrong rate ~ Beta(0.5 + wrong, 0.5 + audited - wrong) (with false_wrong > 0, the posterior of a
    rate read through misjudging verdicts, _rates_with_false_verdicts); wrong count among its unreviewed images
    ~ Binomial(unreviewed, rate); counts summed over bands per draw. The estimate is the mean of the sums,
    the interval their (1 - level)/2 and 1 - (1 - level)/2 quantiles; by_band gives the same per band.
    A band with nothing unreviewed adds 0. A band that was never audited keeps the bare Jeffreys prior, so its
    interval spans nearly 0..unreviewed: nothing is known about it, and the interval says so rather than
    borrowing a rate from other bands. Reproducible for a given seed. No bands: all zeros.

    The lower bound counts a band as 0 when its audit found no wrong label, or no more than misjudged right
    labels would explain (a one-sided test of a zero rate at the interval's tail): the equal-tailed Jeffreys
    lower limit covers far less than its level near a rate of 0, and the usual modification pins it at 0
    (Brown, Cai and DasGupta 2001, as proportion() does). Without it, several large clean bands each added a
    few phantom wrong labels to the lower bound, and it rose above a truth that sat in one band
    (bench/audit.py, ten seeds with the same verdicts: the interval held the truth in 5 before this rule, 8
    with it, 10 once misjudged verdicts were allowed for; tests/test_estimates.py simulates the same on
    other rates).
    """
    _check_level(level)
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    for band in bands:
        _check_band(band)
    if not bands:
        return WrongLeft(0.0, 0.0, 0.0, level, WRONG_LEFT_METHOD, ())

    rng = np.random.default_rng(seed)
    unreviewed = np.array([band.unreviewed for band in bands], dtype=np.int64)[:, None]
    audited = np.array([band.audited for band in bands], dtype=np.int64)[:, None]
    wrong = np.array([band.wrong for band in bands], dtype=float)[:, None]
    # one row of draws per band: first the band's rate, then a realised count of wrong images given that rate
    rates = rng.beta(JEFFREYS + wrong, JEFFREYS + audited - wrong, size=(len(bands), draws))
    for row, band in enumerate(bands):
        if band.false_wrong > 0 and band.audited > 0:
            rates[row] = _rates_with_false_verdicts(band, draws, rng)
    counts = rng.binomial(unreviewed, rates)
    total = counts.sum(axis=0)

    clean = np.array([_explained_by_false_verdicts(band, level) for band in bands])
    by_band = tuple(
        Interval(float(row.mean()), 0.0 if found_none else _central(row, level)[0], _central(row, level)[1])
        for row, found_none in zip(counts, clean, strict=True)
    )
    low, _ = _central(counts[~clean].sum(axis=0), level)
    _, high = _central(total, level)
    return WrongLeft(float(total.mean()), low, high, level, WRONG_LEFT_METHOD, by_band)


_GRID = 4000


def _explained_by_false_verdicts(band: Band, level: float) -> bool:
    """Whether the band's wrong verdicts could all be right labels misjudged: a one-sided test of a wrong rate
    of 0 that does not reject at the interval's tail. With no false verdicts this is "found none"."""
    from scipy.stats import binom

    if band.audited == 0:
        return False
    found = round(band.wrong)
    if found == 0:
        return True
    return band.false_wrong > 0 and float(binom.sf(found - 1, band.audited, band.false_wrong)) >= (1 - level) / 2


def _rates_with_false_verdicts(band: Band, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of a band's wrong rate p when a verdict says wrong with probability q = p + (1 - p) f.

    The posterior has no closed form, so it is evaluated on a grid, in u = sqrt(p): there the Jeffreys prior
    is flat but for (1 - p)^-1/2, so the grid is fine near p = 0, where the question is decided.
    """
    from scipy.stats import binom  # deferred like the others

    u = (np.arange(_GRID) + 0.5) / _GRID
    p = u * u
    q = p + (1.0 - p) * band.false_wrong
    weights = binom.pmf(round(band.wrong), band.audited, q) / np.sqrt(1.0 - p)
    weights /= weights.sum()
    cells = rng.choice(_GRID, size=draws, p=weights)
    return ((cells + rng.random(draws)) / _GRID) ** 2


def verdict_false_wrong(disagreement: float, classes: int, single: bool = False) -> float:
    """The chance that a verdict calls a right label wrong, from how often two experts' answers differ.

    With both experts wrong at a rate e and a wrong answer any other class, two answers differ with
    probability about d = 1 - (1 - e)^2, so e = 1 - sqrt(1 - d). A verdict two experts agree on is wrong
    when both erred the same way, about e^2 / (classes - 1) (an upper bound when their rates differ: e1 e2
    is largest when they are equal); a verdict from one answer alone errs at e.
    """
    if classes < 2 or not 0.0 <= disagreement < 1.0:
        return 0.0
    error = 1.0 - math.sqrt(1.0 - disagreement)
    return error if single else error * error / (classes - 1)


def proportion(successes: int, trials: int, level: float = 0.95) -> Interval | None:
    """successes/trials with its Jeffreys interval (low 0 at 0 successes, high 1 at all); None for 0 trials."""
    from scipy.stats import beta  # deferred: scipy.stats is slow to import and the server imports this module

    _check_level(level)
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, not successes={successes}, trials={trials}")
    if trials == 0:
        return None
    tail = (1.0 - level) / 2.0
    a, b = successes + JEFFREYS, trials - successes + JEFFREYS
    # at the edges the equal-tailed bound would exclude the observed 0 or 1; the usual fix pins it there
    low = 0.0 if successes == 0 else float(beta.ppf(tail, a, b))
    high = 1.0 if successes == trials else float(beta.ppf(1.0 - tail, a, b))
    return Interval(successes / trials, low, high)


def _kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    from sklearn.metrics import cohen_kappa_score  # deferred: slow to import

    if len(first) != len(second):
        raise ValueError(f"the two raters' answers differ in length ({len(first)} and {len(second)})")
    if len(first) < 2:
        return None
    # both raters gave one and the same answer throughout: chance agreement is 1 and kappa is 0/0; answered
    # here because scikit-learn would warn before returning nan
    if len(set(first) | set(second)) < 2:
        return None
    value = float(cohen_kappa_score(list(first), list(second), replace_undefined_by=np.nan))
    return None if math.isnan(value) else value


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' answers, item by item; None when undefined (< 2 items, or nan)."""
    return _kappa(first, second)


def pair_agreement(judgements: Sequence[Judgement]) -> list[PairAgreement]:
    """Agreement and kappa per unordered pair of experts (A with B and B with A together), sorted by names."""
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for judgement in judgements:
        # kappa needs each position to hold one person's answers, so put the pair's answers in name order
        if judgement.first_user <= judgement.second_user:
            key = (judgement.first_user, judgement.second_user)
            answers = (judgement.first_answer, judgement.second_answer)
        else:
            key = (judgement.second_user, judgement.first_user)
            answers = (judgement.second_answer, judgement.first_answer)
        pairs[key].append(answers)
    result = []
    for (first, second), answers in sorted(pairs.items()):
        firsts = [a for a, _ in answers]
        seconds = [b for _, b in answers]
        agreed = sum(a == b for a, b in answers)
        result.append(PairAgreement(first, second, len(answers), agreed, _kappa(firsts, seconds)))
    return result


def class_agreement(judgements: Sequence[Judgement]) -> list[ClassAgreement]:
    """One-vs-rest kappa per label ("" excluded) over all judgements; items = judgements naming it; by label."""
    labels = sorted({answer for j in judgements for answer in (j.first_answer, j.second_answer) if answer != ""})
    result = []
    for label in labels:
        firsts = [j.first_answer == label for j in judgements]
        seconds = [j.second_answer == label for j in judgements]
        items = sum(a or b for a, b in zip(firsts, seconds, strict=True))
        result.append(ClassAgreement(label, items, _kappa(firsts, seconds)))
    return result


def _class_axis(classes: Sequence[str], given: Mapping[int, Mapping[str, str]]) -> list[str]:
    # the classes in the order given, then any answered label the caller did not list (so no answer is lost)
    axis = list(dict.fromkeys(classes))
    known = set(axis)
    extra = sorted({label for by_user in given.values() for label in by_user.values()} - known)
    return axis + extra


def _probability_row(given: Mapping[str, float] | None, axis: Sequence[str]) -> np.ndarray:
    uniform = np.full(len(axis), 1.0 / len(axis))
    if not given:
        return uniform
    row = np.array([float(given.get(label, math.nan)) for label in axis])
    known = ~np.isnan(row)
    if not np.all(np.isfinite(row[known])) or (row[known] < 0.0).any():
        raise ValueError(f"predicted probabilities must be finite and non-negative, not {dict(given)}")
    missing = ~known
    if missing.any():
        # the model's probabilities for unlisted classes are unknown: spread what is left of 1 over them
        row[missing] = max(0.0, 1.0 - row[known].sum()) / missing.sum()
    total = row.sum()
    return row / total if total > 0 else uniform


def _crowdlab_can_run(given: Mapping[int, Mapping[str, str]], annotators: Sequence[str], axis: Sequence[str]) -> bool:
    # cleanlab refuses fewer than two annotators or no item answered twice; with one class its weights divide
    # by K - 1 = 0; and when every item's vote is tied its third tie-break averages over no untied items,
    # gets nan and crashes in np.random.choice (cleanlab 2.9.0): nothing tells the experts apart then anyway
    if len(annotators) < 2 or len(axis) < 2:
        return False
    if not any(len(by_user) >= 2 for by_user in given.values()):
        return False
    for by_user in given.values():
        votes = Counter(by_user.values()).most_common(2)
        if len(votes) == 1 or votes[0][1] > votes[1][1]:
            return True
    return False


def _majority(
    given: Mapping[int, Mapping[str, str]], items: Sequence[int], probs: np.ndarray, index: Mapping[str, int]
) -> Consensus:
    labels: dict[int, str] = {}
    quality: dict[int, float] = {}
    for row, item in enumerate(items):
        votes = Counter(given[item].values())
        top = max(votes.values())
        tied = [label for label, count in votes.items() if count == top]
        # ties go to the model's likelier class, then to the class listed first, so the result is repeatable
        labels[item] = max(tied, key=lambda label: (probs[row, index[label]], -index[label]))
        quality[item] = top / sum(votes.values())
    return Consensus(labels, quality, {})


def consensus(
    answers: Mapping[int, Mapping[str, str]],
    pred_probs: Mapping[int, Mapping[str, float]],
    classes: Sequence[str],
) -> Consensus:
    """CROWDLAB consensus label and quality per item and quality per expert; majority vote when it cannot run.

    answers[item][annotator] is a label; "" (delete) counts as no answer. pred_probs[item][label] is the
    model's probability; labels it leaves out share what is left of 1, an item without any gets uniform.
    Items nobody gave a label are left out. Labels answered but missing from `classes` are added as classes.
    CROWDLAB (cleanlab.multiannotator.get_label_quality_multiannotator) needs two annotators, an item answered
    by two or more of them, two classes, and at least one item whose vote is not tied. Otherwise the fallback:
    the majority answer (ties to the model's likelier class, then to the earlier class), quality = the share
    of the item's annotators who gave it, and annotator_quality = {} (nothing to rate experts by).
    Annotators who never shared an item with another get no annotator_quality (CROWDLAB gives them nan).
    Vote ties cleanlab would settle at random go to the earlier class (TIE_NUDGE on pred_probs), so the same
    answers always give the same consensus.
    """
    given = {item: {user: label for user, label in by_user.items() if label != ""} for item, by_user in answers.items()}
    given = {item: by_user for item, by_user in given.items() if by_user}
    if not given:
        return Consensus({}, {}, {})
    axis = _class_axis(classes, given)
    index = {label: i for i, label in enumerate(axis)}
    items = sorted(given)
    annotators = sorted({user for by_user in given.values() for user in by_user})
    probs = np.vstack([_probability_row(pred_probs.get(item), axis) for item in items])
    if not _crowdlab_can_run(given, annotators, axis):
        return _majority(given, items, probs, index)

    import pandas as pd  # deferred with cleanlab: only this function needs them
    from cleanlab.multiannotator import get_label_quality_multiannotator

    column = {user: i for i, user in enumerate(annotators)}
    matrix = np.full((len(items), len(annotators)), np.nan)
    for row, item in enumerate(items):
        for user, label in given[item].items():
            matrix[row, column[user]] = index[label]
    frame = pd.DataFrame(matrix, index=pd.Index(items), columns=pd.Index(annotators))
    # cleanlab breaks vote ties by pred_probs, and ties it cannot break there by np.random's global state: a
    # consensus that changed between two calls on the same answers. A nudge far below any real difference in
    # probability makes the earlier class win such ties, the same rule as the fallback's.
    nudged = probs + TIE_NUDGE * np.linspace(1.0, 0.0, len(axis), endpoint=False)
    nudged /= nudged.sum(axis=1, keepdims=True)
    # classes nobody answered are fine: cleanlab only requires pred_probs to have a column for every class used
    result = get_label_quality_multiannotator(frame, nudged, verbose=False, return_detailed_quality=False)
    label_quality = result["label_quality"]
    labels = {int(item): axis[int(k)] for item, k in label_quality["consensus_label"].items()}
    quality = {int(item): float(q) for item, q in label_quality["consensus_quality_score"].items()}
    stats = result["annotator_stats"]["annotator_quality"]
    annotator_quality = {str(user): float(q) for user, q in stats.items() if math.isfinite(q)}
    return Consensus(labels, quality, annotator_quality)
