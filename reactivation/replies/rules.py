"""The rules that read a reply's clauses: opt-out, sarcasm, and each clause's verdict, then the reply's label.

Negation ("не", "ни") flips the next content word within its clause. Opt-outs are looked for first, word by word
(`OPT_OUT_RULES`); then sarcasm through its fixed idioms; then each clause gets signals from its words
(`CLAUSE_RULES`, in order, the first rule that takes a word ends that word's turn), a verdict from its signals
(`verdict`, a pure function), and the reply a label from its verdicts (`decide`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reactivation.replies.labels import ReplyLabel
from reactivation.replies.lexicon import (
    ABLE,
    ACK,
    ADDRESS,
    AGREE,
    ASK_VERBS,
    BOOK,
    BOOK_PAST,
    BOOK_STEM,
    CALLBACK,
    DAY_WORDS,
    DEFER,
    ERASE,
    ERASE_OBJECTS,
    FILLERS,
    FOOT_CONTEXT,
    HABITUAL,
    HOURS,
    MSG_NOUNS,
    MSG_VERBS,
    NEGATORS,
    OTHER_PLACE,
    PRICE,
    QUIET,
    REFUSE,
    SARCASM_CUES,
    SARCASM_RUN,
    SARCASM_WORDS,
    SLOT_CUES,
    SLOT_NOUNS,
    STOP_WORDS,
    TIME_AFTER,
    TIME_PREPOSITIONS,
    WANT,
    WEEKDAYS,
)
from reactivation.replies.normalization import Clause, Token, Word, known, normalize_word

# --- Where a rule looks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClauseFacts:
    """What the rules read once per clause."""

    tokens: list[Token]
    texts: list[str]
    lemmas: frozenset[str]
    question: bool
    recently: bool  # "уже", "недавно", "вчера": a past verb tells what happened, not what is wished
    has_msg: bool  # the clause speaks of messages ("не пишите", "сообщения не нужны")
    wrong_number: bool  # the reply says someone made a mistake ("вы ошиблись номером")

    @classmethod
    def of(cls, clause: Clause, *, wrong_number: bool = False) -> ClauseFacts:
        """The facts of one clause; `wrong_number` comes from the whole reply."""
        tokens = clause.tokens
        texts = [t.text for t in tokens]
        return cls(
            tokens=tokens,
            texts=texts,
            lemmas=frozenset(t.lemma for t in tokens),
            question=clause.question,
            recently=bool({"уже", "недавно", "вчера"} & set(texts)),
            has_msg=any(t.has(MSG_VERBS) or t.has(MSG_NOUNS) or t.has({"получать", "получить"}) for t in tokens),
            wrong_number=wrong_number,
        )


@dataclass(frozen=True)
class At:
    """One word of a clause, with its morphology and its neighbours."""

    facts: ClauseFacts
    i: int
    word: Word

    @property
    def tokens(self) -> list[Token]:
        return self.facts.tokens

    @property
    def t(self) -> Token:
        return self.facts.tokens[self.i]

    @property
    def prev(self) -> Token | None:
        return self.facts.tokens[self.i - 1] if self.i else None

    @property
    def nxt(self) -> Token | None:
        return self.facts.tokens[self.i + 1] if self.i + 1 < len(self.facts.tokens) else None

    @property
    def before(self) -> list[Token]:
        """The two words before this one."""
        return self.facts.tokens[max(0, self.i - 2) : self.i]


def _words_of(facts: ClauseFacts) -> list[At]:
    return [At(facts, i, t.word) for i, t in enumerate(facts.tokens) if t.word is not None]


# --- Negation and concrete times -----------------------------------------------------------------------------


def negate(clause: Clause) -> bool:
    """Mark the words "не"/"ни" negate; True when a "не" stands alone ("не, спасибо") or as "не до того"."""
    alone = False
    tokens = clause.tokens
    for i, t in enumerate(tokens):
        if t.text not in NEGATORS:
            continue
        if i and tokens[i - 1].text in {"только", "лишь", "кроме"}:
            continue  # "давайте, только не в субботу" restricts, it does not refuse
        if i + 1 < len(tokens) and tokens[i + 1].text == "до":
            alone = True
            continue
        if t.text == "ни" and i + 1 < len(tokens) and tokens[i + 1].text in {"за", "в"}:
            alone = True
            continue
        for target in tokens[i + 1 :]:
            if target.text in NEGATORS:
                continue
            if target.text in FILLERS and target is not tokens[-1]:
                continue
            target.negated = True
            break
        else:
            alone = True
    return alone


def is_concrete(tokens: list[Token], i: int) -> bool:
    """A day, a time, a date or a master: "в субботу", "в 15:00", "12 числа", "к Ане", "к мастеру"."""
    t = tokens[i]
    prev = tokens[i - 1] if i else None
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if t.special in {"time", "date"}:
        return True
    if t.word is None:
        return False
    if t.has(WEEKDAYS) or t.text in {"днем", "днём"}:
        return True
    if prev is not None and prev.has({"добрый", "хороший", "прекрасный", "удачный"}):
        return False  # "доброе утро", "хорошего дня"
    if t.has(DAY_WORDS) and t.lemma not in {"неделя", "месяц"}:
        return True
    if t.has({"неделя", "месяц"}) and prev is not None and prev.has({"этот", "следующий", "через", "ближайший", "на"}):
        return True
    if t.has("день") and prev is not None and prev.has({"другой", "любой", "какой", "этот", "следующий", "ближайший"}):
        return True
    if t.text.isdigit() and len(t.text) <= 2:  # noqa: SIM102
        if (prev is not None and prev.text in TIME_PREPOSITIONS) or (nxt is not None and nxt.text in TIME_AFTER):
            return True
    if t.has("мастер") and not (prev is not None and prev.has("другой")):
        return True
    after_to = prev is not None and prev.text in {"к", "у"}
    if t.word.name and (t.title or t.word.name_first or after_to):
        # "к Ане", "у Кати", "Оля ещё работает?"
        return after_to or any(o.has("работать") for o in tokens)
    return False


# --- Opt-out ---------------------------------------------------------------------------------------------------


def _content(tokens: list[Token], skip: frozenset[str]) -> list[Token]:
    return [t for t in tokens if not t.has(skip) and t.text not in NEGATORS]


def _stop_word(at: At) -> bool:
    """A stop word ("стоп", "отписаться", "спам", "надоели"); "обработка стоп" is a pedicure."""
    t = at.t
    if not t.has(STOP_WORDS) or t.negated:
        return False
    if t.text == "стоп" and any(p.has(FOOT_CONTEXT) for p in at.before):
        return False
    return not (t.has("достать") and t.text not in {"достали", "достал", "достала", "достало"})


def _do_not_message(at: At) -> bool:
    """A negated messaging verb ("не пишите", "не беспокойте"); "не звоните, пишите" asks for another channel."""
    t = at.t
    if not (t.negated and t.has(MSG_VERBS) and not at.word.first_person):
        return False
    affirmed_writing = any(o.has({"писать", "написать"}) and not o.negated for o in at.tokens)
    return not (t.has("звонить") and affirmed_writing)


def _messages_not_wanted(at: At) -> bool:
    """Messages not wanted ("сообщения не нужны", "не надо мне ваших рассылок")."""
    t = at.t
    return t.negated and at.facts.has_msg and t.has({"надо", "нужно", "нужный", "стоить", "требоваться", "хотеть"})


def _enough(at: At) -> bool:
    """Enough ("хватит", "прекратите") about messages, or alone."""
    t = at.t
    if not t.has({"хватить", "перестать", "прекратить"}) or t.negated:
        return False
    if at.nxt is not None and at.nxt.text == "ли":
        return False
    rest = _content(at.tokens[: at.i] + at.tokens[at.i + 1 :], QUIET)
    return at.facts.has_msg or not rest


def _erase_me(at: At) -> bool:
    """Erase me ("удалите мой номер", "уберите из рассылки", "удалите" alone)."""
    if not at.t.has(ERASE) or at.word.first_person or at.word.past:
        return False
    rest = _content(at.tokens[: at.i] + at.tokens[at.i + 1 :], QUIET | {"из", "с", "от"})
    return not rest or any(o.has(ERASE_OBJECTS) for o in rest)


def _never_subscribed(at: At) -> bool:
    """Never subscribed ("я не подписывалась", "не соглашалась на рассылку")."""
    t = at.t
    if t.negated and t.has({"подписываться", "подписаться"}):
        return True
    return t.negated and t.has({"соглашаться", "согласиться", "давать", "дать"}) and at.facts.has_msg


def _no_consent(at: At) -> bool:
    """No consent given ("я не давала согласия", "без моего согласия")."""
    if not at.t.has("согласие"):
        return False
    refused = any(o.negated and o.has({"давать", "дать", "спрашивать", "спросить"}) for o in at.tokens)
    return refused or any(p.text == "без" for p in at.before)


def _wrong_number(at: At) -> bool:
    """Not our client's number ("вы ошиблись номером", "это не мой номер", "чужой номер")."""
    if not at.t.has("номер"):
        return False
    if at.facts.wrong_number or any(p.has({"тот", "неправильный", "чужой"}) for p in at.before):
        return True
    return any(p.has("мой") and p.negated for p in at.before)


def _hostile(at: At) -> bool:
    """A hostile brush-off ("идите лесом" and worse), or "сколько можно" about messages."""
    t, nxt = at.t, at.nxt
    if nxt is None:
        return False
    if t.text in {"идите", "иди", "пошли", "пошел", "пошла", "катитесь"}:
        return nxt.text in {"вы", "ты", "лесом", "к"} or nxt.text.startswith("нах")
    return t.text == "сколько" and nxt.text == "можно" and at.facts.has_msg


OPT_OUT_RULES: tuple[Callable[[At], bool], ...] = (
    _stop_word,
    _do_not_message,
    _messages_not_wanted,
    _enough,
    _erase_me,
    _never_subscribed,
    _no_consent,
    _wrong_number,
    _hostile,
)


def _spelled_apart(clauses: list[Clause]) -> bool:
    """Letters typed apart: "С Т О П", "s.t.o.p"."""
    run = ""
    for text in [*(t.text for c in clauses for t in c.tokens), ""]:
        if len(text) == 1:
            run += text
            continue
        if len(run) >= 3 and normalize_word(run)[0] in {"стоп", "спам", "отписаться"}:
            return True
        run = ""
    return False


def is_opt_out(clauses: list[Clause]) -> bool:
    """Whether the reply asks to stop messages (its clauses already negated)."""
    if any(t.emoji == "stop" for c in clauses for t in c.tokens):
        return True
    wrong_number = any(t.has("ошибиться") for c in clauses for t in c.tokens)
    for clause in clauses:
        facts = ClauseFacts.of(clause, wrong_number=wrong_number)
        if any(rule(at) for at in _words_of(facts) for rule in OPT_OUT_RULES):
            return True
    return _spelled_apart(clauses)


# --- Sarcasm ---------------------------------------------------------------------------------------------------


def is_sarcastic(clauses: list[Clause]) -> bool:
    """A refusal dressed as agreement, through its fixed idioms ("ага, щас", "бегу уже", "разбежалась")."""
    tokens = [t for c in clauses for t in c.tokens]
    texts = [t.text for t in tokens]
    book_anywhere = any(t.has(BOOK) for t in tokens)
    for i, t in enumerate(tokens):
        prev = texts[i - 1] if i else ""
        if t.text in SARCASM_WORDS:
            return True
        if t.text == "щас" and prev in {"ага", "ну", "да"}:
            return True
        if t.text == "ну" and prev == "ну":
            return True
        if t.word and t.has(SARCASM_RUN) and (t.word.first_person or t.word.past) and not book_anywhere:
            if any(o.text in SARCASM_CUES or o.has("падать") for o in tokens):
                return True
            if {"ага", "конечно"} <= set(texts):
                return True
        if t.has("нечего") and any(o.has("делать") for o in tokens):
            return True
        if t.has("мечтать") and t.word and t.word.past and "жизнь" in {o.lemma for o in tokens}:
            return True
    if "ага" in texts and "конечно" in texts:
        i = texts.index("ага")
        strong = any(t.has(BOOK | WANT) or is_concrete(tokens, j) for j, t in enumerate(tokens))
        if i + 1 < len(texts) and texts[i + 1] == "конечно" and not strong:
            return True
    return False


# --- A clause's signals -----------------------------------------------------------------------------------------


@dataclass
class Signals:
    """What the words of one clause say, before any verdict."""

    refuse: bool = False
    book: bool = False
    concrete: bool = False
    agree: bool = False
    info: bool = False
    defer: bool = False
    already: bool = False
    other: bool = False
    callback: bool = False
    ack: bool = False
    hours: bool = False
    time_ask: bool = False
    proposes: bool = False  # "можно"/"давайте" in the clause keep a day a proposal next to a question


# Each rule reads one word and may set signals; True when the word is taken (later rules do not see it).
ClauseRule = Callable[[At, Signals], bool]


def _nyet(at: At, s: Signals) -> bool:
    """No ("нет") refuses, except in "почему бы и нет" and "нет проблем"."""
    if at.t.text != "нет":
        return False
    nxt = at.nxt
    if "почему" in at.facts.texts[: at.i] or (nxt is not None and nxt.has({"проблема", "вопрос"})):
        s.agree = True
    else:
        s.refuse = True
    return True


def _idioms(at: At, s: Signals) -> bool:
    """Idioms: "да ну" refuses, "нельзя ли" asks."""
    nxt = at.nxt
    if nxt is None:
        return False
    if at.t.text == "да" and nxt.text == "ну":
        s.refuse = True
        return True
    if at.t.text == "нельзя" and nxt.text == "ли":
        s.agree = True
        return True
    return False


def _habit(at: At, s: Signals) -> bool:
    """A habit ("стригусь у подруги") asks for nothing."""
    w = at.word
    return at.t.has(HABITUAL) and not at.t.negated and not (w.infinitive or w.future or w.imperative or w.past)


def _booking(at: At, s: Signals) -> bool:
    """A booking verb: a wish, a refusal when negated, "already" when past, "сама запишусь" a deferral."""
    t, w, texts = at.t, at.word, at.facts.texts
    if not (t.has(BOOK) or BOOK_STEM.match(t.text)):
        return False
    is_past = w.past or (not known(t.text) and bool(BOOK_PAST.search(t.text)))
    if t.negated:
        s.refuse = True
    elif is_past and "бы" in texts:
        s.book = True  # "я бы записалась" is a wish
    elif is_past and (t.has({"записаться", "записать", "записываться"}) or BOOK_STEM.match(t.text)):
        s.already = True
    elif t.lemma == "запись":
        if (at.prev is not None and at.prev.text in {"меня", "уже"}) or "у" in texts[: at.i]:
            s.already = True
        else:
            s.agree = True
    elif w.past:
        s.already = s.already or at.facts.recently
    elif w.first_person and w.future and {"сама", "сам"} & set(texts):
        s.defer = True
    else:
        s.book = True
    return True


def _wanting(at: At, s: Signals) -> bool:
    """A wish: "хочу" books, "хочу узнать" asks, "не хочу" refuses."""
    t = at.t
    if not (t.has(WANT) or t.text == "хочу"):
        return False
    following = at.nxt.lemma if at.nxt is not None else ""
    if t.negated:
        s.refuse = True
    elif following in ASK_VERBS:
        s.info = True
    else:
        s.book = True
    return True


def _been_recently(at: At, s: Signals) -> bool:
    """A recent visit ("уже ходила", "вчера была"): it happened."""
    t = at.t
    went = t.has({"ходить", "ездить", "сходить", "быть", "приходить"}) and at.word.past
    if went and not t.negated and at.facts.recently:
        s.already = True
        return True
    return False


def _either(at: At, s: Signals, words: frozenset[str] | set[str], *, affirmed: str, negated: str) -> bool:
    """A word of `words` sets the signal `affirmed`, or `negated` when it is negated."""
    if not at.t.has(words):
        return False
    setattr(s, negated if at.t.negated else affirmed, True)
    return True


def _refusal_word(at: At, s: Signals) -> bool:
    """A refusal ("дорого", "отпуск", "против"), agreement when negated ("не против")."""
    return _either(at, s, REFUSE, affirmed="refuse", negated="agree")


def _maybe(at: At, s: Signals) -> bool:
    """Maybe ("может") is neither yes nor no."""
    return at.t.text == "может" and not at.t.negated


def _ability(at: At, s: Signals) -> bool:
    """Able ("могу", "удобно", "буду"): agreement, a refusal when negated; "можно узнать" asks."""
    t, nxt, prev = at.t, at.nxt, at.prev
    if not (t.has(ABLE) or t.text == "буду"):
        return False
    if t.negated:
        s.refuse = True
    elif t.text == "можно" and nxt is not None and nxt.lemma in ASK_VERBS:
        s.info = True
    elif (t.text == "можно" and prev is not None and prev.text == "сколько") or t.has(HABITUAL):
        pass  # "сколько можно" is a complaint; "хожу" alone tells a habit
    else:
        s.agree = True
        if t.has({"свободный", "свободно"}):
            s.time_ask = True
    return True


def _free(at: At, s: Signals) -> bool:
    """A free slot asked for ("свободно?"); "не свободна" refuses."""
    return _either(at, s, {"свободный", "свободно"}, affirmed="time_ask", negated="refuse")


def _agreement(at: At, s: Signals) -> bool:
    """Agreement ("да", "ок", "давайте"); negated, a refusal."""
    return _either(at, s, AGREE, affirmed="agree", negated="refuse")


def _now(at: At, s: Signals) -> bool:
    """Now: "не сейчас" refuses; a bare "сейчас" means nothing by itself."""
    if at.t.text != "сейчас":
        return False
    s.refuse = s.refuse or at.t.negated
    return True


def _later(at: At, s: Signals) -> bool:
    """Later ("потом", "позже", "подумаю", "посмотрю", "напишу", "в другой раз"): a deferral."""
    t, w, prev = at.t, at.word, at.prev
    deferred = (
        t.has(DEFER)
        or t.text in {"позже", "позднее", "попозже"}
        or (t.has("посмотреть") and w.first_person and w.future)
        or (t.has({"написать", "позвонить", "набрать"}) and w.first_person and w.future)
        or (t.has("раз") and prev is not None and prev.has({"другой", "следующий"}))
    )
    if deferred:
        s.defer = True
    return deferred


def _when_it_is(at: At, s: Signals) -> bool:
    """When it suits ("когда будет время", "как только смогу"): a deferral."""
    t, nxt, texts = at.t, at.nxt, at.facts.texts
    if t.text not in {"когда", "как"} or nxt is None or nxt.word is None:
        return False
    future = {"будет", "будут"} & set(texts[at.i + 1 : at.i + 4]) or (nxt.word.future and not nxt.word.infinitive)
    if future or nxt.text == "только":
        s.defer = True
        return True
    return False


def _elsewhere(at: At, s: Signals) -> bool:
    """Another place ("другой мастер", "другой салон")."""
    if at.t.has("другой") and at.nxt is not None and at.nxt.has(OTHER_PLACE):
        s.other = True
        return True
    return False


def _callback(at: At, s: Signals) -> bool:
    """A call-back ("перезвоните"), or an acknowledgement ("ясно", "принято")."""
    t = at.t
    if t.has(CALLBACK) and not at.word.first_person and not t.negated:
        s.callback = True
        return True
    if t.has(ACK) and not t.negated:
        s.ack = True
        return True
    return False


def _how_much_or_when(at: At, s: Signals) -> bool:
    """When and how much: "во сколько", "когда" ask for a time, "до скольки" the hours, "сколько" a price."""
    t, prev = at.t, at.prev
    if t.text == "когда":
        s.time_ask = True
        return True
    if t.text != "сколько":
        return False
    if prev is not None and prev.text in {"во", "в"}:
        s.time_ask = True
    elif prev is not None and prev.text == "до":
        s.hours = True
    else:
        s.info = True
    return True


def _slot(at: At, s: Signals) -> bool:
    """A slot asked for ("есть время?", "свободное окошко")."""
    t, prev = at.t, at.prev
    if not t.has(SLOT_NOUNS) or t.negated or (prev is not None and prev.text == "по"):
        return False
    if at.facts.question or any(o.has(SLOT_CUES) for o in at.tokens):
        s.time_ask = True
    return True


def _hours(at: At, s: Signals) -> bool:
    """The hours asked for ("у вас выходной в понедельник?", "вы работаете?", "график")."""
    t = at.t
    if t.has("выходной") and at.facts.question and "вы" in at.facts.lemmas:
        s.hours = True
        return True
    if t.has(HOURS) and not any(o.word and o.word.name and o.title for o in at.tokens):
        s.hours = True
        return True
    return False


def _price_or_address(at: At, s: Signals) -> bool:
    """A question of price or place ("скидка" only when asked)."""
    t = at.t
    if t.has(PRICE) and not t.negated:
        if t.lemma not in {"скидка", "акция"} or at.facts.question:
            s.info = True
        return True
    if t.has(ADDRESS):
        s.info = True
        return True
    return False


def _negated_time(at: At, s: Signals) -> bool:
    """A negated day or time ("не в субботу", "не в этот раз", "уже не живу тут") refuses; other negated words pass."""
    t = at.t
    if not t.negated:
        return False
    if is_concrete(at.tokens, at.i) or t.has({"раз", "жить"}):
        s.refuse = True
    return True


def _concrete(at: At, s: Signals) -> bool:
    """A day, a time or a master."""
    if is_concrete(at.tokens, at.i):
        s.concrete = True
    return True


CLAUSE_RULES: tuple[ClauseRule, ...] = (
    _nyet,
    _idioms,
    _habit,
    _booking,
    _wanting,
    _been_recently,
    _refusal_word,
    _maybe,
    _ability,
    _free,
    _agreement,
    _now,
    _later,
    _when_it_is,
    _elsewhere,
    _callback,
    _how_much_or_when,
    _slot,
    _hours,
    _price_or_address,
    _negated_time,
    _concrete,
)


def _wordless(tokens: list[Token], i: int, s: Signals) -> None:
    """An emoji or a placeholder: 👍 agrees, 👎 refuses, a time or a date is concrete."""
    t = tokens[i]
    if t.emoji == "yes":
        s.agree = True
    elif t.emoji == "no":
        s.refuse = True
    if not t.negated and is_concrete(tokens, i):
        s.concrete = True


def signals(clause: Clause) -> Signals:
    """The signals of one clause (its words already negated), each word read by the first rule that takes it."""
    facts = ClauseFacts.of(clause)
    s = Signals(refuse=negate(clause), proposes=bool({"можно", "давайте"} & facts.lemmas))
    for i, t in enumerate(facts.tokens):
        if t.word is None:
            _wordless(facts.tokens, i, s)
            continue
        at = At(facts, i, t.word)
        for rule in CLAUSE_RULES:
            if rule(at, s):
                break
    return s


# --- Verdicts and the label ------------------------------------------------------------------------------------

VerdictKind = Literal["already", "refuse", "book", "concrete", "info", "ack", "agree", "none"]


@dataclass(frozen=True)
class Verdict:
    """What one clause amounts to; `concrete` when it names a day, a time or a master."""

    kind: VerdictKind
    concrete: bool = False


def verdict(s: Signals) -> Verdict:
    """A clause's verdict from its signals."""
    # "во сколько вы открываетесь" asks for hours, not for a slot.
    time_ask = s.time_ask and not s.hours
    info = s.info or s.hours
    # A day or time next to agreement proposes it ("давайте в субботу"), unless the clause asks about prices or
    # hours ("сколько стоит в субботу?"); "можно"/"давайте" keep it a proposal even then.
    proposal = s.agree and s.concrete and (not info or s.proposes)
    if s.already:
        return Verdict("refuse") if s.other else Verdict("already")
    if s.other or s.refuse:
        return Verdict("refuse")
    if s.defer and not s.concrete:
        return Verdict("refuse")
    if s.callback:
        return Verdict("none")
    if s.book or time_ask or proposal:
        return Verdict("book", concrete=s.concrete or time_ask)
    if info:
        return Verdict("info")
    if s.concrete:
        return Verdict("concrete", concrete=True)
    if s.ack:
        return Verdict("ack")
    if s.agree:
        return Verdict("agree")
    return Verdict("none")


_DECISIVE = {"refuse", "book", "concrete", "agree", "already"}


def decide(verdicts: list[Verdict], contrasts: list[bool]) -> ReplyLabel:
    """The reply's label from its clauses' verdicts; a clause after "но"/"а" that decides overrides the ones before."""
    scope = list(range(len(verdicts)))
    for start in range(len(verdicts) - 1, 0, -1):
        if contrasts[start] and any(verdicts[j].kind in _DECISIVE for j in range(start, len(verdicts))):
            scope = list(range(start, len(verdicts)))
            break
    kinds = [verdicts[j].kind for j in scope]
    if "already" in kinds:
        return ReplyLabel.NEUTRAL
    if any(verdicts[j].kind in {"book", "concrete"} and verdicts[j].concrete for j in scope):
        return ReplyLabel.POSITIVE
    last = next((k for k in reversed(kinds) if k in {"refuse", "book", "concrete", "agree"}), None)
    if last is None:
        return ReplyLabel.NEUTRAL
    if last == "refuse":
        return ReplyLabel.NEGATIVE
    if last in {"book", "concrete"}:
        return ReplyLabel.POSITIVE
    # Bare agreement next to a question ("да, а сколько стоит?") or an acknowledgement ("хорошо, я поняла")
    # answers the message, it does not ask for a booking.
    return ReplyLabel.NEUTRAL if {"info", "ack"} & set(kinds) else ReplyLabel.POSITIVE


def label_of(clauses: list[Clause]) -> ReplyLabel:
    """The label of a reply's clauses: opt-out first, then sarcasm, then the clauses' verdicts."""
    for clause in clauses:
        negate(clause)
    if is_opt_out(clauses):
        return ReplyLabel.OPT_OUT
    if is_sarcastic(clauses):
        return ReplyLabel.NEGATIVE
    return decide([verdict(signals(c)) for c in clauses], [c.contrast for c in clauses])
