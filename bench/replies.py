"""Reply classification: accuracy per label on the labeled sets, the rules beside the seed's substring matching.

Figures, not timings: the share of each label's replies that get that label (its recall), on the set the rules
were written against, on its trap rows, and on the blind set written afterwards and never used for tuning.
"""

from __future__ import annotations

from bench.common import Figure
from reactivation.replies.classify import classify_reply
from tests.reply_set import BLIND_TSV, LABELS, LabeledReply, load_replies, score_by_label
from tests.seed_classifier import seed_classify


def _figures(name: str, rows: list[LabeledReply]) -> list[Figure]:
    rules = score_by_label(rows, classify_reply)
    seed = score_by_label(rows, seed_classify)
    figures = []
    for label in (*LABELS, "all"):
        figures.append(
            Figure(
                f"{name}: {label} ({rules[label].total} replies)",
                100 * rules[label].accuracy,
                "%",
                baseline=100 * seed[label].accuracy,
                baseline_label="substring",
                note=f"{rules[label].correct} vs {seed[label].correct} right",
            )
        )
    return figures


def run() -> list[Figure]:
    labeled = load_replies()
    return [
        *_figures("labeled set", labeled),
        *_figures("its traps", [row for row in labeled if row.is_trap]),
        *_figures("blind set", load_replies(BLIND_TSV)),
    ]
