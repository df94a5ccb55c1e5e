"""The labeled replies in tests/data: loading them and scoring a classifier on them, for the tests and the bench."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
# The set the rules were written against (every trap the issue names and more).
REPLIES_TSV = DATA / "replies.tsv"
# Written after the rules and never used to tune them: the honest estimate of how they generalize.
BLIND_TSV = DATA / "replies_blind.tsv"
# Rows of REPLIES_TSV the rules label wrongly today, each with the label they give (see load_known_failures).
KNOWN_FAILURES_TSV = DATA / "replies_known_failures.tsv"
# Replies in the styles of issue 20 (warm refusals with a reason, "<day> никак", named times, already done
# elsewhere, salon questions, busy, misspellings, transliteration, voice, emoji, mixed languages, several clauses,
# sarcasm), labeled with reasons and times: the rules are tuned on it.
DEV_TSV = DATA / "replies_dev.tsv"
# A second dev set in the same columns, by another writer, scored once untouched and then tuned on.
DEV2_TSV = DATA / "replies_dev2.tsv"
# A third dev set (issue 20's styles again, opt-outs of every kind: stop words, "удалите мой номер", 152-FZ consent
# withdrawn, Roskomnadzor; and near-misses that are no opt-out: "не пишите в выходные"), written fresh and scored
# once untouched before the rules were tuned on it.
DEV3_TSV = DATA / "replies_dev3.tsv"
# A fourth dev set by yet another writer, weighted to opt-outs the rules did not know (indirect, hostile, wrong
# numbers, English) and to near-misses that are none ("не пишите в выходные", "в чёрный список не добавлю, но …",
# "я не ваш клиент уже давно, хожу к мастеру у дома"), scored once untouched before the rules were tuned on it.
DEV4_TSV = DATA / "replies_dev4.tsv"
# Written apart from the rules, blind, and never to tune them on: read only by the bench and by the opt-out floor
# test. Nobody working on the rules looks at its rows or at which of them fail.
FROZEN_TSV = DATA / "replies_frozen.tsv"
LABELS = ("positive", "negative", "neutral", "opt_out")
OPT_OUT = "opt_out"


@dataclass(frozen=True)
class LabeledReply:
    line: int
    text: str
    label: str
    tags: frozenset[str]
    reason: str | None = None  # None where the set has no reason column or the label has none
    until: str | None = None  # the named time of a not_now reply (jan..dec, summer, next_month, ...)
    style: str | None = None

    @property
    def is_trap(self) -> bool:
        return bool(self.tags)


def load_replies(path: Path = REPLIES_TSV) -> list[LabeledReply]:
    """Rows under a header that names the columns: `text` and `label`, then any of `tags` (comma-separated trap
    kinds), `reason`, `until`, `style`; a row may stop before its optional columns."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    columns = lines[0].split("\t")
    if columns[:2] != ["text", "label"]:
        raise ValueError(f"{path.name}:1: the header must start with text, label; got {columns[:2]}")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = dict(zip(columns, line.split("\t"), strict=False))
        label = cells["label"]
        if label not in LABELS:
            raise ValueError(f"{path.name}:{number}: unknown label {label!r}")
        tags = frozenset(t for t in cells.get("tags", "").split(",") if t)
        rows.append(
            LabeledReply(
                line=number,
                text=cells["text"],
                label=label,
                tags=tags,
                reason=cells.get("reason") or None,
                until=cells.get("until") or None,
                style=cells.get("style") or None,
            )
        )
    return rows


@dataclass(frozen=True)
class Score:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def score_by_label(rows: Iterable[LabeledReply], classify: Callable[[str], str]) -> dict[str, Score]:
    """Accuracy per true label (that is, the recall of each label) plus 'all'."""
    correct = dict.fromkeys((*LABELS, "all"), 0)
    total = dict.fromkeys((*LABELS, "all"), 0)
    for row in rows:
        hit = str(classify(row.text)) == row.label
        for key in (row.label, "all"):
            total[key] += 1
            correct[key] += hit
    return {key: Score(correct[key], total[key]) for key in correct}


@dataclass(frozen=True)
class KnownFailure:
    """A row of the labeled set the rules get wrong today, and the label they give it."""

    line: int
    text: str
    label: str


def load_known_failures(path: Path, rows: Iterable[LabeledReply]) -> dict[int, KnownFailure]:
    """Rows of `line<TAB>text<TAB>label` under a header line (`#` lines are comments), by line of the labeled set.

    Each must name a row of `rows` by its line and its exact text (an edit of the set that moves or changes the row
    makes the entry stale, and that is an error), with a label other than the right one. An opt-out is never a known
    failure, either way: the rules must hear every request to stop and invent none.
    """
    by_line = {row.line: row for row in rows}
    known: dict[int, KnownFailure] = {}
    numbered = enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
    content = [(n, line) for n, line in numbered if line.strip() and not line.startswith("#")]
    for number, line in content[1:]:
        where = f"{path.name}:{number}"
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0].isdigit():
            raise ValueError(f"{where}: expected line<TAB>text<TAB>label, got {line!r}")
        entry = KnownFailure(int(fields[0]), fields[1], fields[2])
        row = by_line.get(entry.line)
        if row is None or row.text != entry.text:
            held = "nothing" if row is None else repr(row.text)
            raise ValueError(f"{where}: line {entry.line} of the labeled set holds {held}, not {entry.text!r}")
        if entry.label not in LABELS:
            raise ValueError(f"{where}: unknown label {entry.label!r}")
        if entry.label == row.label:
            raise ValueError(f"{where}: {entry.label!r} is the right label, so line {entry.line} is no failure")
        if OPT_OUT in (entry.label, row.label):
            raise ValueError(f"{where}: an opt-out is never a known failure (line {entry.line}, {row.label})")
        if entry.line in known:
            raise ValueError(f"{where}: line {entry.line} is listed twice")
        known[entry.line] = entry
    return known
