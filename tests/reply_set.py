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
LABELS = ("positive", "negative", "neutral", "opt_out")


@dataclass(frozen=True)
class LabeledReply:
    line: int
    text: str
    label: str
    tags: frozenset[str]

    @property
    def is_trap(self) -> bool:
        return bool(self.tags)


def load_replies(path: Path = REPLIES_TSV) -> list[LabeledReply]:
    """Rows of `text<TAB>label[<TAB>tags]` under a header line; tags are comma-separated trap kinds."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        text, label, *rest = line.split("\t")
        if label not in LABELS:
            raise ValueError(f"{path.name}:{number}: unknown label {label!r}")
        tags = frozenset(t for t in (rest[0] if rest else "").split(",") if t)
        rows.append(LabeledReply(line=number, text=text, label=label, tags=tags))
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
