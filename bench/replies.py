"""Reply classification: label and reason accuracy, the rules beside the rules as they were and the seed's matching.

Figures, not timings. On the frozen blind set (tests/data/replies_frozen.tsv, written apart from the rules and never
used to tune them): label accuracy, opt-out recall, false opt-outs, reason accuracy on the negative replies, the
recall of each label and of each reason, and how often a not_now reply's named time is read right. Beside each, the
seed's substring matching and the rules as they stood before reasons (issue 20), loaded from git. Then the recall
per label on the set the rules were written against, its trap rows, the older blind set, the dev set of
issue 20's styles, the second dev set by another writer, the third and the fourth (each tuned on after one
untouched score), with the reason accuracy on each dev set's refusals and, on the third and fourth, their opt-out
recall and false opt-outs.

Only the figures are printed, never the rows: whoever tunes the rules must not learn which frozen rows fail.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from bench.common import Figure
from reactivation.replies.classify import Classification, explain_reply
from tests.reply_set import (
    BLIND_TSV,
    DEV2_TSV,
    DEV3_TSV,
    DEV4_TSV,
    DEV_TSV,
    FROZEN_TSV,
    LABELS,
    LabeledReply,
    load_replies,
    score_by_label,
)
from tests.seed_classifier import seed_classify

# The last commit before reasons: its classify.py is "today's rules" of issue 20.
RULES_BEFORE_COMMIT = "8b2d3839987cdb6ba9a364e547492908517a0338"
REASONS = ("not_now", "price", "moved_away", "went_elsewhere", "self_service", "unhappy", "no_need")
NEUTRAL_REASONS = ("question", "busy", "other")
_ROOT = Path(__file__).resolve().parent.parent


def rules_before() -> Callable[[str], str] | None:
    """classify_reply as it was at RULES_BEFORE_COMMIT, or None without git or that commit."""
    try:
        source = subprocess.run(
            ["git", "show", f"{RULES_BEFORE_COMMIT}:reactivation/replies/classify.py"],
            cwd=_ROOT,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    name = "bench._rules_before"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the code runs
    exec(compile(source, f"{RULES_BEFORE_COMMIT[:7]}:classify.py", "exec"), module.__dict__)
    classify: Callable[[str], str] = module.classify_reply
    return classify


def _percent(hits: int, total: int) -> float:
    return 100 * hits / total if total else 0.0


def _frozen(rows: list[LabeledReply], before: Callable[[str], str] | None) -> list[Figure]:
    now = [explain_reply(row.text) for row in rows]
    then = [str(before(row.text)) for row in rows] if before else None
    seed = [seed_classify(row.text) for row in rows]

    def label_figure(name: str, keep: Callable[[LabeledReply], bool]) -> Figure:
        picked = [i for i, row in enumerate(rows) if keep(row)]
        hits = sum(now[i].label.value == rows[i].label for i in picked)
        seed_hits = sum(seed[i] == rows[i].label for i in picked)
        note = f"{hits} of {len(picked)} right; seed {seed_hits}"
        if then is not None:
            before_hits = sum(then[i] == rows[i].label for i in picked)
            note += f"; rules before reasons {_percent(before_hits, len(picked)):.1f} % ({before_hits})"
        return Figure(name, _percent(hits, len(picked)), "%", _percent(seed_hits, len(picked)), "substring", note)

    figures = [label_figure("frozen set: label accuracy", lambda row: True)]
    figures += [label_figure(f"frozen set: {label} recall", lambda row, la=label: row.label == la) for label in LABELS]
    false_opt_outs = sum(
        c.label.value == "opt_out" and row.label != "opt_out" for c, row in zip(now, rows, strict=True)
    )
    note = "seed has no opt_out label"
    if then is not None:
        before = sum(t == "opt_out" and row.label != "opt_out" for t, row in zip(then, rows, strict=True))
        note += f"; rules before reasons {before}"
    figures.append(Figure("frozen set: false opt-outs", false_opt_outs, "replies", note=note))
    figures += _reasons(rows, now)
    return figures


def _reason_right(c: Classification, row: LabeledReply) -> bool:
    return c.label.value == row.label and (c.reason.value if c.reason else None) == row.reason


def _reasons(rows: list[LabeledReply], now: list[Classification]) -> list[Figure]:
    negatives = [i for i, row in enumerate(rows) if row.label == "negative"]
    hits = sum(_reason_right(now[i], rows[i]) for i in negatives)
    figures = [
        Figure(
            "frozen set: reason accuracy on negatives",
            _percent(hits, len(negatives)),
            "%",
            note=f"{hits} of {len(negatives)} with label and reason right; the seed and the rules before had none",
        )
    ]
    for reason in (*REASONS, *NEUTRAL_REASONS):
        picked = [i for i, row in enumerate(rows) if row.reason == reason]
        right = sum(_reason_right(now[i], rows[i]) for i in picked)
        figures.append(
            Figure(f"frozen set: reason {reason}", _percent(right, len(picked)), "%", note=f"{right} of {len(picked)}")
        )
    timed = [i for i, row in enumerate(rows) if row.reason == "not_now"]
    right = sum(_reason_right(now[i], rows[i]) and (now[i].when or "") == (rows[i].until or "") for i in timed)
    figures.append(
        Figure(
            "frozen set: not_now with its named time", _percent(right, len(timed)), "%", note=f"{right} of {len(timed)}"
        )
    )
    return figures


def _by_label(name: str, rows: list[LabeledReply]) -> list[Figure]:
    rules = score_by_label(rows, lambda text: explain_reply(text).label)
    seed = score_by_label(rows, seed_classify)
    return [
        Figure(
            f"{name}: {label} ({rules[label].total} replies)",
            100 * rules[label].accuracy,
            "%",
            baseline=100 * seed[label].accuracy,
            baseline_label="substring",
            note=f"{rules[label].correct} vs {seed[label].correct} right",
        )
        for label in (*LABELS, "all")
    ]


def _dev_reasons(name: str, rows: list[LabeledReply]) -> Figure:
    negatives = [row for row in rows if row.label == "negative"]
    hits = sum(_reason_right(explain_reply(row.text), row) for row in negatives)
    note = f"{hits} of {len(negatives)} with label and reason right"
    return Figure(f"{name}: reason accuracy on negatives", _percent(hits, len(negatives)), "%", note=note)


def _false_opt_outs(name: str, rows: list[LabeledReply]) -> Figure:
    invented = sum(explain_reply(row.text).label.value == "opt_out" != row.label for row in rows)
    return Figure(f"{name}: false opt-outs", invented, "replies", note=f"of {len(rows)} replies")


def run() -> list[Figure]:
    labeled = load_replies()
    dev, dev2, dev3 = load_replies(DEV_TSV), load_replies(DEV2_TSV), load_replies(DEV3_TSV)
    dev4 = load_replies(DEV4_TSV)
    return [
        *_frozen(load_replies(FROZEN_TSV), rules_before()),
        *_by_label("labeled set", labeled),
        *_by_label("its traps", [row for row in labeled if row.is_trap]),
        *_by_label("blind set", load_replies(BLIND_TSV)),
        *_by_label("dev set", dev),
        _dev_reasons("dev set", dev),
        *_by_label("dev set 2", dev2),
        _dev_reasons("dev set 2", dev2),
        *_by_label("dev set 3", dev3),
        _dev_reasons("dev set 3", dev3),
        _false_opt_outs("dev set 3", dev3),
        *_by_label("dev set 4", dev4),
        _dev_reasons("dev set 4", dev4),
        _false_opt_outs("dev set 4", dev4),
    ]
