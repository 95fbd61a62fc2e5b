"""How clean the data is: drawing a blind audit, and the estimates a team lead reads from it.

- **Drawing** (draw): the unreviewed scored images are split into four score bands at the 50th, 80th and
  95th percentiles of their scores (the bottom half the queue never reaches, up to the top 5% it reaches
  first), and the same number of images is drawn at random from each band (capped at its size). Equal
  allocation spends more of the audit where wrong labels are common and the estimate is least sure than
  drawing in proportion to band sizes would, and it still reaches the low-score bands.
- **Verdicts**: the answer, when one expert answered or two agree (two independent experts naming the same
  wrong class is rare); for a settled disagreement, the answer two of the three (both experts and the
  admin) gave, which is the admin's unless the admin named a third class; three different answers and
  disagreements still waiting go to cleanlab's CROWDLAB consensus (each answer weighed by its author's
  estimated quality, with the model's probabilities). The label itself follows the admin's settlement
  either way; the verdict is the audit's best guess at the truth, and an answer that nobody else gave is
  weaker evidence than two that match (bench/audit.py --settle: verdict errors 3.1 per audit of 200 when
  the settlement counted alone). The label was wrong when the verdict differs from the label it had when drawn,
  or says delete. (Counting a disagreement by CROWDLAB's consensus quality score instead, as a probability,
  was measured and dropped: the score is a weighted average, not a calibrated probability, and it put
  about 20 phantom wrong labels into each audit of 200 in bench/audit.py.)
- **Wrong labels left** (labeling/estimates.py wrong_left): per band, the audit's wrong fraction and the
  band's unreviewed images now, summed as a stratified Bayesian posterior-predictive count with a 95%
  interval. Verdicts can be wrong: the chance that one calls a right label wrong comes from how often
  second opinions disagree (estimates.verdict_false_wrong) and enters each band's likelihood. As the
  ranked queue goes on reviewing a band after the draw, the images it takes out are the band's likeliest
  wrong, so the estimate for that band errs high; a new audit tightens it.
- **Precision of the queue**: the share of ranked decisions (keep, relabel, delete from the queue, undone
  ones left out) that found a wrong label, with a Jeffreys interval; and over the last 100 such decisions.
- **Stopping hint**: the next 100 items of the queue are expected to hold (recent precision) x 100 wrong
  labels; before 20 ranked decisions, the audit's top band's rate stands in.
- **Agreement**: Cohen's kappa per expert pair and per class (one class against the rest) over second
  opinions, and CROWDLAB's estimated quality per expert.

Every figure is computed on read, so it follows each decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from context import Context
from db import blind as blind_db
from db import decisions as decision_db
from db import queue as queue_db
from db import scores as score_db
from db.labels import list_label_names
from labeling import estimates
from labeling.ranking.duplicates import PAIR_SCORER
from labeling.ranking.scoring import serving_scorer

BAND_QUANTILES = (0.5, 0.8, 0.95)
RECENT = 100  # the ranked decisions the stopping hint and the recent precision look at
NEXT_ITEMS = 100  # the stopping hint's horizon
MIN_RECENT = 20  # fewer ranked decisions than this say too little about the next ones


@dataclass(frozen=True)
class Drawn:
    """An audit's draw: its bands, and every member of its population (image id, band, drawn?, label)."""

    bands: list[dict]
    members: list[tuple[int, int, bool, str | None]]
    sampled: int


@dataclass(frozen=True)
class AuditDrawn:
    """A stored audit: its id, bands, how many images it drew and from how many."""

    audit_id: int
    bands: list[dict]
    sampled: int
    population: int


def draw(population: Sequence[tuple[int, float, str | None]], size: int, seed: int | None = None) -> Drawn:
    """Split (image id, score, label) into score bands and draw up to size images, the same number per band."""
    scores = np.array([score for _, score, _ in population], dtype=float)
    edges = np.quantile(scores, BAND_QUANTILES)
    bands_of = np.searchsorted(edges, scores, side="right")
    rng = np.random.default_rng(seed)
    members_by_band = [np.flatnonzero(bands_of == b) for b in range(len(BAND_QUANTILES) + 1)]
    wanted = _equal_allocation([len(m) for m in members_by_band], size)
    chosen: set[int] = set()
    for members, n in zip(members_by_band, wanted, strict=True):
        if n:
            chosen.update(int(i) for i in rng.choice(members, size=n, replace=False))
    bounds = [float(scores.min()), *map(float, edges), float(scores.max())]
    bands = [
        {
            "name": f"score {bounds[b]:.2f}–{bounds[b + 1]:.2f}",
            "low": bounds[b],
            "high": bounds[b + 1],
            "size": len(members_by_band[b]),
            "drawn": int(wanted[b]),
        }
        for b in range(len(members_by_band))
    ]
    members = [(image_id, int(bands_of[i]), i in chosen, label) for i, (image_id, _, label) in enumerate(population)]
    return Drawn(bands, members, len(chosen))


def _equal_allocation(sizes: list[int], total: int) -> list[int]:
    """total split as evenly as the band sizes allow (a small band's leftover goes to the others)."""
    wanted = [0] * len(sizes)
    left = min(total, sum(sizes))
    while left > 0:
        open_bands = [b for b, size in enumerate(sizes) if wanted[b] < size]
        share = max(1, left // len(open_bands))
        for b in open_bands:
            take = min(share, sizes[b] - wanted[b], left)
            wanted[b] += take
            left -= take
            if left == 0:
                break
    return wanted


@dataclass(frozen=True)
class AuditItemVerdict:
    """An answered audit item: its band, its label when drawn, the verdict, and how the verdict was reached."""

    image_id: int
    band: int
    label: str | None
    verdict: str | None  # None: delete it
    how: str  # single (one answer so far) | agreed | disputed | settled
    wrong: bool  # the verdict differs from the label it had when drawn (or says delete)


@dataclass(frozen=True)
class Estimates:
    """Everything Admin → Dataset and `loupe stats` say about how clean the labels are."""

    ranked_decisions: int
    ranked_found: int
    precision: estimates.Interval | None
    recent_decisions: int
    recent_precision: estimates.Interval | None
    audit_id: int | None = None
    audit_size: int = 0
    audit_answered: int = 0
    bands: list[estimates.Band] = field(default_factory=list)
    wrong_left: estimates.WrongLeft | None = None
    unreviewed: int = 0
    next_items: int = 0
    next_expected: float | None = None
    next_basis: str = ""
    verdicts: list[AuditItemVerdict] = field(default_factory=list)
    pairs: list[estimates.PairAgreement] = field(default_factory=list)
    classes: list[estimates.ClassAgreement] = field(default_factory=list)
    expert_quality: dict[str, float] = field(default_factory=dict)
    open_checks: dict[str, int] = field(default_factory=dict)

    def sentences(self) -> list[str]:
        """The figures in plain words, one sentence each."""
        said = []
        if self.precision is not None:
            p = self.precision
            said.append(
                f"Of {self.ranked_decisions:,} images reviewed from the ranked queue, {self.ranked_found:,} had a "
                f"wrong label: the queue's precision is {p.estimate:.0%} (95% interval {p.low:.0%}–{p.high:.0%})."
            )
            if self.recent_precision is not None and self.recent_decisions < self.ranked_decisions:
                r = self.recent_precision
                said.append(f"Over the last {self.recent_decisions} of them it is {r.estimate:.0%}.")
        else:
            said.append("Nobody has reviewed from the ranked queue yet.")
        if self.audit_id is None:
            said.append("No audit yet: start one to estimate the wrong labels left among the unreviewed images.")
        elif self.wrong_left is None:
            said.append(
                f"Audit {self.audit_id}: {self.audit_answered} of {self.audit_size} items answered; "
                "the estimate appears with the first answers."
            )
        else:
            w = self.wrong_left
            said.append(
                f"Audit {self.audit_id} ({self.audit_answered} of {self.audit_size} items answered): about "
                f"{w.estimate:,.0f} wrong labels are left among the {self.unreviewed:,} unreviewed images it covers "
                f"(95% interval {w.low:,.0f}–{w.high:,.0f})."
            )
        if self.next_expected is not None:
            said.append(
                f"The next {self.next_items} items of the queue are expected to hold about "
                f"{about(self.next_expected)} wrong labels ({self.next_basis})."
            )
        for pair in self.pairs:
            kappa = f"kappa {pair.kappa:.2f}" if pair.kappa is not None else "kappa not defined yet"
            said.append(
                f"{pair.first} and {pair.second} agreed on {pair.agreed} of {pair.items} second opinions ({kappa})."
            )
        waiting = self.open_checks
        if any(waiting.values()):
            said.append(
                f"Waiting: {waiting.get('audit', 0)} audit items, {waiting.get('second', 0)} second opinions, "
                f"{waiting.get('disputed', 0)} disagreements for an admin."
            )
        return said


def about(expected: float) -> str:
    """An expected count as said aloud: whole from 10 up, one decimal below (0.2, not 0)."""
    return f"{expected:,.0f}" if expected >= 10 else f"{expected:.1f}"


def estimates_of_ranked(actions: Sequence[str], finding: Sequence[str]) -> tuple[int, int, int, int]:
    """(decisions, wrong labels found) over all ranked decisions and over the most recent RECENT."""
    found = [action in finding for action in actions]
    recent = found[-RECENT:]
    return len(found), sum(found), len(recent), sum(recent)


def measure(context: Context, *, reviewing: Sequence[str], judging: Sequence[str], finding: Sequence[str]) -> Estimates:
    """Compute the estimates from the log, the latest audit and the second opinions (see the module docstring)."""
    database = context.database
    actions = decision_db.ranked_actions(database, judging, leave_out_scorers=[PAIR_SCORER])
    total, found, recent_total, recent_found = estimates_of_ranked(actions, finding)
    result = {
        "ranked_decisions": total,
        "ranked_found": found,
        "precision": estimates.proportion(found, total),
        "recent_decisions": recent_total,
        "recent_precision": estimates.proportion(recent_found, recent_total),
        "open_checks": blind_db.count_open(database),
    }
    judgements = blind_db.judgements(database)
    classes = list_label_names(database)
    result.update(_agreement(context, judgements, classes))
    audit = blind_db.latest_audit(database)
    top_rate = None
    if audit is not None:
        items = blind_db.audit_items(database, audit.id)
        verdicts = audit_verdicts(context, audit, items, judgements, classes)
        unreviewed = blind_db.unreviewed_by_band(database, audit.id, reviewing=reviewing)
        disagreement = _disagreement(judgements)
        bands = []
        for b, band in enumerate(audit.bands):
            in_band = [v for v in verdicts if v.band == b]
            wrong = sum(v.wrong for v in in_band)
            misjudged = [
                estimates.verdict_false_wrong(disagreement, len(classes), single=v.how == "single") for v in in_band
            ]
            false_wrong = sum(misjudged) / len(misjudged) if misjudged else 0.0
            bands.append(estimates.Band(band["name"], unreviewed.get(b, 0), len(in_band), wrong, false_wrong))
        result.update(
            audit_id=audit.id,
            audit_size=len(items),
            audit_answered=len(verdicts),
            bands=bands,
            verdicts=verdicts,
            unreviewed=sum(band.unreviewed for band in bands),
            wrong_left=estimates.wrong_left(bands) if verdicts else None,
        )
        top = bands[-1] if bands else None
        top_rate = (top.wrong + 0.5) / (top.audited + 1) if top and top.audited else None
    queue_left = _unreviewed_in_queue(context, reviewing)
    next_items = min(NEXT_ITEMS, queue_left)
    if recent_total >= MIN_RECENT and next_items:
        result.update(
            next_items=next_items,
            next_expected=recent_found / recent_total * next_items,
            next_basis=f"the last {recent_total} ranked decisions found {recent_found} wrong labels",
        )
    elif top_rate is not None and next_items:
        result.update(
            next_items=next_items,
            next_expected=top_rate * next_items,
            next_basis="the audit's highest score band; fewer than 20 ranked decisions so far",
        )
    return Estimates(**result)


def _unreviewed_in_queue(context: Context, reviewing: Sequence[str]) -> int:
    page = queue_db.queue_page(
        context.database, serving_scorer(context), queue_db.QueueFilters(), limit=1, reviewing=reviewing
    )
    return page.unreviewed


def audit_verdicts(
    context: Context,
    audit: blind_db.AuditRow,
    items: list[blind_db.AuditItem],
    judgements: list[blind_db.Judgement],
    classes: list[str],
) -> list[AuditItemVerdict]:
    """Each answered audit item's verdict, and whether its label was wrong (see the module docstring)."""
    items = [item for item in items if item.answer is not None]
    checks = {j.first.decision_id: j for j in judgements if j.audit_id == audit.id and j.status != blind_db.WITHDRAWN}
    answers: dict[int, dict[str, str]] = {}
    for item in items:
        given = {item.answer.user_name: item.answer.label or ""}
        check = checks.get(item.answer.decision_id)
        if check is not None and check.second is not None:
            given[check.second.user_name] = check.second.label or ""
        answers[item.image_id] = given
    with_settlements = {
        item.image_id: {**answers[item.image_id], f"settled by {check.settled.user_name}": check.settled.label or ""}
        for item in items
        if (check := checks.get(item.answer.decision_id)) is not None and check.settled is not None
    }
    crowdlab: dict[bool, estimates.Consensus] = {}

    def consensus(settled: bool) -> estimates.Consensus:
        """CROWDLAB over every answered item (that is how it rates the experts), with the settlements or
        without; run once each, and only when a verdict needs it (a disagreement, or three answers apart)."""
        if settled not in crowdlab:
            probabilities = score_db.probabilities_of(context.database, audit.scorer, list(answers))
            crowdlab[settled] = estimates.consensus(
                {**answers, **with_settlements} if settled else answers, probabilities, classes
            )
        return crowdlab[settled]

    verdicts = []
    for item in items:
        check = checks.get(item.answer.decision_id)
        how = "single" if check is None or check.second is None else check.status
        verdict = item.answer.label  # one answer, or two that agree (two experts naming one wrong class is rare)
        if check is not None and check.settled is not None:
            votes = [item.answer.label, check.second.label, check.settled.label]
            verdict = majority(votes)
            if verdict is _NO_MAJORITY:  # three different answers: CROWDLAB weighs them with the model
                verdict = consensus(settled=True).labels.get(item.image_id, check.settled.label)
        elif how == blind_db.DISPUTED:
            verdict = consensus(settled=False).labels.get(item.image_id, verdict)
        verdicts.append(AuditItemVerdict(item.image_id, item.band, item.label, verdict, how, verdict != item.label))
    return verdicts


def _disagreement(judgements: list[blind_db.Judgement]) -> float:
    """How often a second opinion's answer differed from the decision it checked (0 before any)."""
    answered = [j for j in judgements if j.second is not None]
    return sum(j.first.label != j.second.label for j in answered) / len(answered) if answered else 0.0


_NO_MAJORITY = object()


def majority(votes: list[str | None]):
    """The answer at least two of the votes give (None: delete), or _NO_MAJORITY."""
    for vote in votes:
        if votes.count(vote) >= 2:
            return vote
    return _NO_MAJORITY


def _agreement(context: Context, judgements: list[blind_db.Judgement], classes: list[str]) -> dict:
    pairs = [
        estimates.Judgement(j.task_id, j.first.user_name or "?", j.first.label or "", j.second.user_name or "?",
                            j.second.label or "")
        for j in judgements
        if j.second is not None
    ]  # fmt: skip
    if not pairs:
        return {}
    answers = {p.item: {p.first_user: p.first_answer, p.second_user: p.second_answer} for p in pairs}
    by_task = {j.task_id: j.image_id for j in judgements}
    scorer = serving_scorer(context)
    image_probabilities = score_db.probabilities_of(context.database, scorer, list(set(by_task.values())))
    probabilities = {task: image_probabilities.get(image, {}) for task, image in by_task.items() if task in answers}
    quality = estimates.consensus(answers, probabilities, classes).annotator_quality
    return {
        "pairs": estimates.pair_agreement(pairs),
        "classes": estimates.class_agreement(pairs),
        "expert_quality": quality,
    }
