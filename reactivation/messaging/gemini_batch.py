"""Several clients' messages from Gemini: one request for the batch, one single-client retry per item it got wrong,
and the template for what is still wrong after that.

The request asks for a JSON array with one message per item, identified by position (batch_prompt.py). Each item is
judged on its own. What can happen to a request, and to its items:
- an answer: usable items are written; a missing, invalid or duplicated item gets one request of its own, and the
  template when that fails too;
- an answer cut at the output cap (MAX_TOKENS): the batch is asked again in two halves, and a half cut again takes
  its templates (`truncated`);
- a 5xx, a timeout, a dropped connection: retried with exponential backoff and jitter within GEMINI_MAX_ATTEMPTS and
  the batch's budget (GEMINI_BUDGET_SECONDS), then the templates;
- a per-minute 429: every worker is blocked for the RetryInfo delay and the items go back to wait for a later batch
  (`Requeue`); an unknown 429 the same, after an exponentially growing block. Where nothing can wait (a preview, a
  run in one process) the writer waits for the block itself, within the budget;
- a per-day 429: Gemini pauses for every worker until midnight Pacific; the items take their templates;
- a region, key or model refusal: the breaker opens; the items take their templates with the cause as the reason.
Every attempt takes its slot through the gate (gemini_gate.py) and is recorded with its token usage.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import tenacity

from reactivation.core.errors import PermanentError, TransientError
from reactivation.core.settings import Settings
from reactivation.messaging.batch_prompt import (
    SYSTEM_INSTRUCTION,
    Verdict,
    build_batch_prompt,
    judge_items,
    parse_items,
    response_schema,
    wording,
)
from reactivation.messaging.gemini import TRUNCATED, Answer, GeminiWriter, PromptFacts, Usage
from reactivation.messaging.gemini_errors import DAY, MINUTE, GeminiRefused, QuotaExceeded
from reactivation.messaging.gemini_gate import DAILY_QUOTA, Closed, GeminiGate, Go

log = logging.getLogger(__name__)

# A retry that would leave less than this of the budget for the attempt itself is not worth making.
_MIN_ATTEMPT_SECONDS = 1.0
# Backoff for 5xx and timeouts: 1 s, 2 s, 4 s ... plus up to 1 s of jitter, capped.
_exponential_jitter = tenacity.wait_exponential_jitter(initial=1.0, max=8.0, jitter=1.0)
# Added to the delay a per-minute 429 asks for: this worker dates the answer from the task's start plus its own
# monotonic clock, which trails the wall clock by the batch's preparation, and Google counts the delay on its side.
# A request a millisecond early would only earn another 429.
QUOTA_DELAY_MARGIN_SECONDS = 0.5
RATE_LIMITED_BUDGET = "rate_limited_budget"
# What a request that got no answer cost as far as we know.
NO_USAGE = Usage()
BAD_RESPONSE = "bad_response"
# Transient failures in which Gemini said nothing: what an outage looks like.
_NO_ANSWER = frozenset({"timeout", "connection_error", "server_error"})


@dataclass(frozen=True)
class Wrote:
    """The item's validated message."""

    text: str
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fallback:
    """No message from Gemini for this item: its template, with `reason` as the fallback_reason."""

    reason: str


@dataclass(frozen=True)
class Requeue:
    """The item waits for a later batch (a per-minute or unknown quota blocked every worker)."""

    reason: str


ItemOutcome = Wrote | Fallback | Requeue


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request: which items (indices into the batch) it asked for, what it cost, what came of it."""

    key: str
    positions: tuple[int, ...]
    model: str
    thinking: str
    usage: Usage
    outcome: str
    finish_reason: str | None = None
    written: tuple[int, ...] = ()


@dataclass
class BatchResult:
    """One outcome per item, in the order given, and every request made for them."""

    outcomes: list[ItemOutcome]
    requests: list[RequestRecord]
    model: str


class _Stop(Exception):
    """Every item of the request ends this way (a pause, the breaker, a requeue, no slot within the budget)."""

    def __init__(self, outcome: Fallback | Requeue) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass(frozen=True)
class _Truncated:
    """The answer stopped at the output cap."""


@dataclass
class _Run:
    """One batch's way through its requests."""

    items: Sequence[PromptFacts]
    started_at: datetime
    started_clock: float
    deadline: float
    slot_taken: bool
    can_requeue: bool
    outcomes: dict[int, ItemOutcome] = field(default_factory=dict)
    records: list[RequestRecord] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)  # wording already written, which no other item may repeat
    model: str = ""


class _StopBeforeDeadline(tenacity.stop.stop_base):
    """Stop when the next wait would leave less than `floor` seconds of the budget for an attempt."""

    def __init__(self, deadline: float, *, clock: Callable[[], float], floor: float) -> None:
        self.deadline = deadline
        self.clock = clock
        self.floor = floor

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + retry_state.upcoming_sleep > self.deadline - self.floor


class BatchWriter:
    """Writes the messages of a batch of items through one GeminiWriter and the shared gate."""

    def __init__(
        self,
        writer: GeminiWriter,
        gate: GeminiGate,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.gate = gate
        self.budget_seconds = settings.gemini_budget_seconds
        self.max_attempts = settings.gemini_max_attempts
        self._sleep = sleep
        self._clock = clock

    def write(
        self, items: Sequence[PromptFacts], *, now: datetime, slot_taken: bool = False, can_requeue: bool = False
    ) -> BatchResult:
        """An outcome per item; `slot_taken` when the caller holds the first request's slot already."""
        start = self._clock()
        run = _Run(items, now, start, start + self.budget_seconds, slot_taken, can_requeue, model=self.writer.model)
        retries = self._round(run, list(range(len(items))), split=True)
        names = [facts.first_name for facts in items]
        for index, _reason in retries:
            others = names[:index] + names[index + 1 :]
            result = self._ask(run, [index], others=others)
            if isinstance(result, dict):
                self._settle(run, result)
            else:
                run.outcomes[index] = Fallback(TRUNCATED) if isinstance(result, _Truncated) else result
        outcomes = [run.outcomes[index] for index in range(len(items))]
        written = sum(isinstance(outcome, Wrote) for outcome in outcomes)
        log.info(
            "gemini batch done",
            extra={"items": len(items), "written": written, "requests": len(run.records), "model": run.model},
        )
        return BatchResult(outcomes, run.records, run.model)

    def _round(self, run: _Run, positions: list[int], *, split: bool) -> list[tuple[int, str]]:
        """Ask for `positions` in one request; settle what it answered; the items that deserve a retry of their own."""
        result = self._ask(run, positions)
        if isinstance(result, _Truncated):
            if split and len(positions) > 1:
                half = len(positions) // 2
                return self._round(run, positions[:half], split=False) + self._round(run, positions[half:], split=False)
            for index in positions:
                run.outcomes[index] = Fallback(TRUNCATED)
            return []
        if not isinstance(result, dict):
            for index in positions:
                run.outcomes[index] = result
            return []
        return self._settle(run, result)

    def _settle(self, run: _Run, verdicts: dict[int, Verdict]) -> list[tuple[int, str]]:
        """Record the usable items; return the others with their reasons (their last word, for a retry)."""
        unusable = []
        for index, verdict in verdicts.items():
            if verdict.result is not None:
                run.outcomes[index] = Wrote(verdict.result.text, verdict.result.repairs)
                run.taken.append(wording(verdict.result.text, run.items[index]))
            else:
                reason = verdict.reason or "empty"
                run.outcomes[index] = Fallback(reason)
                unusable.append((index, reason))
        if unusable:
            log.info("gemini items unusable", extra={"reasons": ",".join(sorted({r for _, r in unusable}))})
        return unusable

    def _ask(
        self, run: _Run, positions: list[int], *, others: Sequence[str | None] = ()
    ) -> dict[int, Verdict] | _Truncated | Fallback | Requeue:
        """One request for these items (retried on transient errors): a verdict per item, or what stopped it."""
        facts = [run.items[index] for index in positions]
        prompt = build_batch_prompt(facts)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts)
            | _StopBeforeDeadline(run.deadline, clock=self._clock, floor=self._floor()),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(TransientError),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._take_slot(run)
                    answer = self._send(run, positions, prompt)
        except _Stop as stop:
            return stop.outcome
        except TransientError as exc:
            return Fallback(exc.kind)
        return self._verdicts(run, positions, answer, others)

    def _verdicts(
        self, run: _Run, positions: list[int], answer: Answer, others: Sequence[str | None]
    ) -> dict[int, Verdict] | _Truncated:
        record = run.records[-1]
        if answer.problem == TRUNCATED:
            return _Truncated()
        facts = [run.items[index] for index in positions]
        parsed = parse_items(answer.text, len(positions)) if answer.text is not None else None
        if parsed is None:
            problem = answer.problem or BAD_RESPONSE
            run.records[-1] = replace(record, outcome=problem)
            return {index: Verdict(None, problem) for index in positions}
        judged = judge_items(parsed, facts, taken=run.taken, others=others)
        verdicts = dict(zip(positions, judged, strict=True))
        written = tuple(index for index, verdict in verdicts.items() if verdict.ok)
        run.records[-1] = replace(record, written=written)
        return verdicts

    def _send(self, run: _Run, positions: list[int], prompt: str) -> Answer:
        """One HTTP request, recorded; quota, breaker and permanent errors become `_Stop`s, transient ones re-raise."""
        timeout = min(self.writer.timeout_seconds, max(run.deadline - self._clock(), 0.001))
        try:
            answer = self.writer.request(
                prompt,
                system_instruction=SYSTEM_INSTRUCTION,
                timeout_seconds=timeout,
                schema=response_schema(len(positions)),
            )
        except QuotaExceeded as exc:
            self._record(run, positions, exc.kind)
            self.gate.heard_back()
            # From the answer's arrival: the delay Google asks for starts when it says so.
            raise self._quota(run, exc, self._now(run)) from None
        except GeminiRefused as exc:
            self._record(run, positions, exc.kind)
            self.gate.open_breaker(self._now(run), exc.cause, detail=str(exc))
            raise _Stop(Fallback(exc.cause.reason)) from None
        except PermanentError as exc:
            self._record(run, positions, exc.kind)
            log.warning("gemini refused the request", extra={"reason": exc.kind, "model": self.writer.model})
            raise _Stop(Fallback(exc.kind)) from None
        except TransientError as exc:
            self._record(run, positions, exc.kind)
            # A timeout counts toward an outage only when the request had the whole GEMINI_TIMEOUT_SECONDS, not what
            # was left of the batch's budget; an answer that would not parse was an answer.
            unanswered = exc.kind in _NO_ANSWER and (exc.kind != "timeout" or timeout >= self.writer.timeout_seconds)
            if unanswered and (closed := self.gate.went_unanswered(self._now(run), detail=str(exc))):
                raise _Stop(Fallback(closed.reason)) from None
            raise
        self.gate.succeeded()
        run.model = answer.model
        self._record(run, positions, answer.problem or "ok", usage=answer.usage, finish=answer.finish_reason)
        return answer

    def _quota(self, run: _Run, exc: QuotaExceeded, now: datetime) -> Exception:
        """What a 429 does: a per-day pause, or a block for every worker and a requeue (or a wait, where none)."""
        if exc.quota == DAY:
            self.gate.pause_for_the_day(now, DAILY_QUOTA)
            return _Stop(Fallback(DAILY_QUOTA))
        if exc.quota == MINUTE:
            asked = exc.retry_after if exc.retry_after is not None else float(self.gate.limiter.rate.seconds)
            seconds = asked + QUOTA_DELAY_MARGIN_SECONDS
            self.gate.block(now, seconds, why=exc.kind)
        else:
            seconds = self.gate.back_off(now)
        if run.can_requeue:
            return _Stop(Requeue(exc.kind))
        return TransientError(exc.kind, str(exc.quota_id), retry_after=seconds)

    def _take_slot(self, run: _Run) -> None:
        """This attempt's slot through the gate, waiting within the budget; a closed gate or no slot stops it."""
        if run.slot_taken:
            run.slot_taken = False
            return
        for _ in range(1000):  # bounded; each pass either takes a slot, stops, or sleeps toward the deadline
            decision = self.gate.acquire(self._now(run))
            if isinstance(decision, Go):
                return
            if isinstance(decision, Closed):
                raise _Stop(Fallback(decision.reason))
            if self._clock() + decision.seconds > run.deadline - self._floor():
                raise _Stop(Requeue(RATE_LIMITED_BUDGET) if run.can_requeue else Fallback(RATE_LIMITED_BUDGET))
            self._sleep(decision.seconds)
        raise _Stop(Fallback(RATE_LIMITED_BUDGET))

    def _record(
        self, run: _Run, positions: list[int], outcome: str, *, usage: Usage = NO_USAGE, finish: str | None = None
    ) -> None:
        run.records.append(
            RequestRecord(
                key=uuid.uuid4().hex,
                positions=tuple(positions),
                model=run.model or self.writer.model,
                thinking=self.writer.thinking.label,
                usage=usage,
                outcome=outcome,
                finish_reason=finish,
            )
        )

    def _now(self, run: _Run) -> datetime:
        """The caller's `now`, moved on by the time this batch has taken."""
        return run.started_at + timedelta(seconds=self._clock() - run.started_clock)

    def _floor(self) -> float:
        return min(_MIN_ATTEMPT_SECONDS, self.writer.timeout_seconds)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return float(_exponential_jitter(retry_state))

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        log.info(
            "gemini attempt failed, retrying",
            extra={
                "reason": getattr(exc, "kind", type(exc).__name__),
                "attempt": retry_state.attempt_number,
                "wait_seconds": round(retry_state.upcoming_sleep, 2),
                "model": self.writer.model,
            },
        )
