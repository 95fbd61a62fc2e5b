"""Does the audit's interval hold the truth? Simulated experts review and audit the demo digits through the service.

What it measures: the demo digits (1,797 images, 10% of labels flipped on purpose; the demo knows which, and
each flipped image's true label) are imported, embedded and scored once with Loupe's real ranking pass
(labeling.ranking.scoring.rescore, the pass serving_scorer names), with three users: experts "ace" and
"rookie" and an admin "lead". Per seed, on a fresh copy of that instance:

1. the two experts take turns at `review.next_item` (default filters and blind=True, as the Review tab asks,
   so blind second opinions are mixed in) until they have decided the top K=150 items of the ranked queue;
   the default review policy asks a blind second opinion on 10% of decisions, every relabel and every audit
   answer;
2. lead starts an audit of N=200 (`review.start_audit(..., seed=seed)`); the experts answer every audit item
   and every second opinion that comes, still through `review.next_item`, with every unreviewed image not
   drawn for the audit passed as `skip=` so that only blind checks come; disagreements stay unsettled (the
   estimate falls back to CROWDLAB's consensus for them) unless --settle, where lead settles each one;
3. `review.dataset_estimates` gives the wrong labels left with a 95% interval; the truth is the number of
   unreviewed active images whose label is not their true label; `covered` counts seeds whose interval
   holds it. An "oracle" interval, the same estimator fed the audit items' true wrongness instead of the
   experts' verdicts, tells sampling luck apart from verdict errors.
4. Cohen's kappa of the ace-rookie pair as Loupe measures it (estimates.pairs) against the kappa the two
   accuracies imply on the same items, found by SIMULATION: the two experts' answers on every item both of
   them judged, drawn anew 200 times from the true labels, Cohen's kappa averaged (its spread is printed too).

Error model: an expert with accuracy a shown an image whose true class is t says t with probability a, else
one of the 9 other classes at random; the answer is keep when it equals the label shown, else a relabel to
it (deletes are not simulated). The same model answers blind checks and, with accuracy 0.95, lead's
settlements. Each seed draws its own answers and its own audit; the ranked queue's order is the same every
seed (one scoring pass) and the 10% share of second opinions is drawn per decision id by the service.

Everything goes through labeling/review.py; db/ is only read (the audit's items, the second opinions).
Last line: one JSON object (means over seeds, per-seed lists under "per_seed"). Target: covered >= 9 of 10.

    .venv/bin/python bench/audit.py [--seeds 10] [--top 150] [--audit 200] [--settle]

Typical run time on 2 cores: 2-3 minutes to import, embed and score once, then about 15 s a seed (5-6 minutes
in all for 10 seeds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import open_instance, print_table

from context import Context
from db import blind as blind_db
from db import images as image_db
from db import users as user_db
from db.queue import QueueFilters
from db.users import UserRow
from labeling import estimates, review
from labeling.imports.demo import import_demo, read_flipped
from labeling.ranking.scoring import rescore

EXPERT_ACCURACY = {"ace": 0.95, "rookie": 0.75}
ADMIN_NAME, ADMIN_ACCURACY = "lead", 0.95
PASSWORD = "bench-password-123"
KAPPA_REPETITIONS = 200
EVERYTHING = 1_000_000  # a page size that holds the whole queue


@dataclass
class Simulated:
    """A user who answers as the error model says: the true class with probability accuracy, else another."""

    user: UserRow
    accuracy: float
    rng: np.random.Generator

    def says(self, truth: str, classes: list[str]) -> str:
        """The class this user says an image of class truth shows."""
        if self.rng.random() < self.accuracy:
            return truth
        return str(self.rng.choice([c for c in classes if c != truth]))


@dataclass
class Prepared:
    """The scored instance every seed starts from, and what the demo knows about it."""

    data_dir: Path
    true_label: dict[int, str]  # image id -> the digit it shows
    imported_label: dict[int, str]  # image id -> its label before any decision
    classes: list[str]
    seconds: float


def prepare(folder: Path) -> Prepared:
    """Import the demo, embed and score it with the ranking pass the queue reads, and add the three users."""
    started = time.monotonic()
    data_dir = folder / "scored"
    context = open_instance(data_dir)
    import_demo(context)
    flipped = read_flipped(data_dir)
    # Before any decision, an image's label is the one it was imported with: its true label unless flipped.
    imported = list(image_db.iter_active_labeled(context.database))
    true_label = {
        row.id: flipped[row.content_hash][0] if row.content_hash in flipped else row.label for row in imported
    }
    rescore(context)
    for name in EXPERT_ACCURACY:
        user_db.add_user(context.database, name, "expert", PASSWORD)
    user_db.add_user(context.database, ADMIN_NAME, "admin", PASSWORD)
    context.database.dispose()
    classes = sorted(set(true_label.values()))
    imported_label = {row.id: row.label for row in imported}
    return Prepared(data_dir, true_label, imported_label, classes, time.monotonic() - started)


def answer(context: Context, who: Simulated, item, prepared: Prepared) -> bool:
    """Answer a queue item as who would: keep when they see the label shown, else relabel; whether it was blind."""
    said = who.says(prepared.true_label[item.image_id], prepared.classes)
    action, new_label = ("keep", None) if said == item.label else ("relabel", said)
    if item.task_id is not None:
        review.answer_blind(
            context, who.user, item.task_id, action, expected_last_id=item.last_decision_id, new_label=new_label
        )
        return True
    review.decide(context, who.user, item.image_id, action, expected_last_id=item.last_decision_id, new_label=new_label)
    return False


def review_top(context: Context, experts: list[Simulated], prepared: Prepared, top: int) -> list[int]:
    """The experts take turns at the unfiltered queue until they decided top ranked items; those images' ids."""
    ranked: list[int] = []
    turn = 0
    while len(ranked) < top:
        expert = experts[turn % len(experts)]
        turn += 1
        item = review.next_item(context, expert.user, QueueFilters(), blind=True)
        if item is None:
            break
        if not answer(context, expert, item, prepared):
            ranked.append(item.image_id)
    return ranked


def answer_blind_checks(context: Context, experts: list[Simulated], prepared: Prepared, skip: tuple[int, ...]) -> int:
    """The experts take turns answering blind checks until neither is offered one; how many they answered."""
    answered = idle = turn = 0
    while idle < len(experts):
        expert = experts[turn % len(experts)]
        turn += 1
        item = review.next_item(context, expert.user, QueueFilters(), skip=skip, blind=True)
        if item is None:
            idle += 1
            continue
        if item.task_id is None:
            raise RuntimeError(f"the queue offered ranked image {item.image_id} although every ranked one was skipped")
        idle = 0
        answer(context, expert, item, prepared)
        answered += 1
    return answered


def settle_all(context: Context, admin: Simulated, prepared: Prepared) -> int:
    """The admin settles every disagreement waiting, as the error model says; how many."""
    waiting = review.disagreements(context, admin.user)
    for judgement in waiting:
        review.settle(context, admin.user, judgement.task_id, admin.says(prepared.true_label[judgement.image_id],
                                                                          prepared.classes))  # fmt: skip
    return len(waiting)


def kappa_implied(
    pairs: list[tuple[str, str, str]], rng: np.random.Generator, classes: list[str]
) -> tuple[float, float]:
    """Mean and spread of Cohen's kappa over fresh answers drawn for the same items: (first, second, true label)."""
    values = []
    for _ in range(KAPPA_REPETITIONS):
        firsts = [_draw(EXPERT_ACCURACY[first], truth, rng, classes) for first, _, truth in pairs]
        seconds = [_draw(EXPERT_ACCURACY[second], truth, rng, classes) for _, second, truth in pairs]
        kappa = estimates.cohen_kappa(firsts, seconds)
        if kappa is not None:
            values.append(kappa)
    return float(np.mean(values)), float(np.std(values))


def _draw(accuracy: float, truth: str, rng: np.random.Generator, classes: list[str]) -> str:
    if rng.random() < accuracy:
        return truth
    return str(rng.choice([c for c in classes if c != truth]))


def run_seed(prepared: Prepared, folder: Path, seed: int, top: int, audit_size: int, settle: bool) -> dict:
    """One simulation on a fresh copy of the scored instance; its figures."""
    started = time.monotonic()
    data_dir = folder / f"seed-{seed}"
    shutil.copytree(prepared.data_dir, data_dir)
    context = open_instance(data_dir)
    try:
        users = {user.name: user for user in user_db.list_users(context.database)}
        experts = [
            Simulated(users[name], accuracy, np.random.default_rng([seed, index]))
            for index, (name, accuracy) in enumerate(EXPERT_ACCURACY.items())
        ]
        admin = Simulated(users[ADMIN_NAME], ADMIN_ACCURACY, np.random.default_rng([seed, len(experts)]))

        ranked = review_top(context, experts, prepared, top)
        drawn = review.start_audit(context, admin.user, audit_size, seed=seed)
        audited = {item.image_id for item in blind_db.audit_items(context.database, drawn.audit_id)}
        unreviewed = review.queue_page(context, admin.user, QueueFilters(reviewed=False), limit=EVERYTHING).items
        blind_answers = answer_blind_checks(
            context, experts, prepared, skip=tuple(i.image_id for i in unreviewed if i.image_id not in audited)
        )
        settled = settle_all(context, admin, prepared) if settle else 0
        measured = review.dataset_estimates(context, admin.user)
        if measured.open_checks.get("audit") or measured.open_checks.get("second"):
            raise RuntimeError(f"blind checks left unanswered: {measured.open_checks}")

        left = review.queue_page(context, admin.user, QueueFilters(reviewed=False), limit=EVERYTHING).items
        truth = sum(item.label != prepared.true_label[item.image_id] for item in left)
        wrong_left = measured.wrong_left
        # The same estimator fed each audit item's true wrongness: what a perfect panel of experts would give.
        truly_wrong = {v.image_id: v.label != prepared.true_label[v.image_id] for v in measured.verdicts}
        oracle_bands = [
            estimates.Band(band.name, band.unreviewed, band.audited,
                           sum(truly_wrong[v.image_id] for v in measured.verdicts if v.band == b))
            for b, band in enumerate(measured.bands)
        ]  # fmt: skip
        oracle = estimates.wrong_left(oracle_bands)
        false_wrong = [v for v in measured.verdicts if v.wrong and not truly_wrong[v.image_id]]
        missed = [v for v in measured.verdicts if truly_wrong[v.image_id] and not v.wrong]
        verdict_errors_by_how: dict[str, int] = {}
        for verdict in false_wrong + missed:
            verdict_errors_by_how[verdict.how] = verdict_errors_by_how.get(verdict.how, 0) + 1
        how = {}
        for verdict in measured.verdicts:
            how[verdict.how] = how.get(verdict.how, 0) + 1

        pair = next((p for p in measured.pairs if {p.first, p.second} == set(EXPERT_ACCURACY)), None)
        judged = [
            (j.first.user_name, j.second.user_name, prepared.true_label[j.image_id])
            for j in blind_db.judgements(context.database)
            if j.second is not None and {j.first.user_name, j.second.user_name} == set(EXPERT_ACCURACY)
        ]
        kappa_true, kappa_spread = kappa_implied(judged, np.random.default_rng([seed, 99]), prepared.classes)
        open_checks = measured.open_checks
    finally:
        context.database.dispose()
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "seed": seed,
        "true_wrong_left": int(truth),
        "estimated_wrong_left": wrong_left.estimate,
        "interval_low": wrong_left.low,
        "interval_high": wrong_left.high,
        "covered": wrong_left.low <= truth <= wrong_left.high,
        "oracle_low": oracle.low,
        "oracle_high": oracle.high,
        "oracle_covered": oracle.low <= truth <= oracle.high,
        "unreviewed": len(left),
        "estimate_unreviewed": measured.unreviewed,
        "audit_answered": measured.audit_answered,
        "verdict_errors": len(false_wrong) + len(missed),
        "verdict_false_wrong": len(false_wrong),
        "verdict_missed": len(missed),
        "verdict_errors_by_how": verdict_errors_by_how,
        "verdicts_by_how": how,
        "audit_found_wrong": sum(v.wrong for v in measured.verdicts),
        "audit_truly_wrong": sum(truly_wrong.values()),
        "kappa_estimated": pair.kappa if pair else None,
        "kappa_items": pair.items if pair else 0,
        "kappa_true": kappa_true,
        "kappa_true_sd": kappa_spread,
        "expert_quality_estimated": measured.expert_quality,
        "queue_precision": measured.precision.estimate if measured.precision else None,
        "queue_precision_true": float(np.mean([prepared.imported_label[i] != prepared.true_label[i] for i in ranked]))
        if ranked
        else None,
        "ranked_decisions": measured.ranked_decisions,
        "blind_answers": blind_answers,
        "settled": settled,
        "open_checks": open_checks,
        "seconds": time.monotonic() - started,
    }


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 4) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--top", type=int, default=150, help="ranked items the experts review before the audit")
    parser.add_argument("--audit", type=int, default=200, help="images the audit draws")
    parser.add_argument("--settle", action="store_true", help="the admin settles every disagreement (accuracy 0.95)")
    args = parser.parse_args()

    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="loupe-audit-") as temp:
        prepared = prepare(Path(temp))
        wrong = sum(prepared.imported_label[i] != truth for i, truth in prepared.true_label.items())
        print(
            f"import, embed and score {len(prepared.true_label)} digits ({wrong} labeled wrong) once: "
            f"{prepared.seconds:.0f} s",
            flush=True,
        )
        for seed in range(args.seeds):
            result = run_seed(prepared, Path(temp), seed, args.top, args.audit, args.settle)
            results.append(result)
            print(
                f"seed {seed}: truth {result['true_wrong_left']}, estimate {result['estimated_wrong_left']:.1f} "
                f"[{result['interval_low']:.0f}, {result['interval_high']:.0f}], "
                f"{'covered' if result['covered'] else 'MISSED'}, {result['seconds']:.0f} s",
                flush=True,
            )

    rows = [
        [
            r["seed"], r["true_wrong_left"], round(r["estimated_wrong_left"], 1),
            f"{r['interval_low']:.0f}-{r['interval_high']:.0f}", "yes" if r["covered"] else "NO",
            f"{r['oracle_low']:.0f}-{r['oracle_high']:.0f}", f"{r['audit_found_wrong']}/{r['audit_truly_wrong']}",
            f"{r['verdict_false_wrong']}/{r['verdict_missed']}",
            "—" if r["kappa_estimated"] is None else round(r["kappa_estimated"], 3),
            f"{r['kappa_true']:.3f}±{r['kappa_true_sd']:.3f}", r["kappa_items"], round(r["seconds"], 1),
        ]
        for r in results
    ]  # fmt: skip
    print_table(
        f"audit of {args.audit} after the top {args.top}; ace 0.95, rookie 0.75"
        + ("; lead settles disagreements" if args.settle else "; disagreements left to CROWDLAB"),
        ["seed", "truth", "estimate", "95% interval", "covered", "oracle interval", "audit wrong found/true",
         "verdict false wrong/missed", "kappa est", "kappa true", "pair items", "seconds"],
        rows,
    )  # fmt: skip
    covered = sum(r["covered"] for r in results)
    print(f"covered {covered} of {len(results)}; oracle covered {sum(r['oracle_covered'] for r in results)}")

    names = sorted({name for r in results for name in r["expert_quality_estimated"]})
    per_seed_keys = [
        "true_wrong_left", "estimated_wrong_left", "interval_low", "interval_high", "covered", "oracle_low",
        "oracle_high", "verdict_errors", "verdict_false_wrong", "verdict_missed", "unreviewed",
        "estimate_unreviewed", "kappa_estimated", "kappa_true", "kappa_items", "queue_precision",
        "queue_precision_true", "blind_answers", "seconds",
    ]  # fmt: skip
    per_seed = {key: [r[key] for r in results] for key in per_seed_keys}
    per_seed["expert_quality_estimated"] = [r["expert_quality_estimated"] for r in results]
    per_seed["verdicts_by_how"] = [r["verdicts_by_how"] for r in results]
    per_seed["verdict_errors_by_how"] = [r["verdict_errors_by_how"] for r in results]
    print(
        json.dumps(
            {
                "true_wrong_left": _mean(per_seed["true_wrong_left"]),
                "estimated_wrong_left": _mean(per_seed["estimated_wrong_left"]),
                "interval_low": _mean(per_seed["interval_low"]),
                "interval_high": _mean(per_seed["interval_high"]),
                "covered": int(covered),
                "oracle_covered": int(sum(r["oracle_covered"] for r in results)),
                "seeds": len(results),
                "kappa_true": _mean(per_seed["kappa_true"]),
                "kappa_estimated": _mean(per_seed["kappa_estimated"]),
                "expert_accuracy": EXPERT_ACCURACY,
                "expert_quality_estimated": {
                    name: _mean([r["expert_quality_estimated"].get(name) for r in results]) for name in names
                },
                "queue_precision": _mean(per_seed["queue_precision"]),
                "queue_precision_true": _mean(per_seed["queue_precision_true"]),
                "verdict_errors": _mean(per_seed["verdict_errors"]),
                "audit_size": args.audit,
                "reviewed_top": args.top,
                "settled": args.settle,
                "setup_seconds": round(prepared.seconds, 1),
                "seconds": round(time.monotonic() - started, 1),
                "per_seed": per_seed,
            }
        )
    )


if __name__ == "__main__":
    main()
