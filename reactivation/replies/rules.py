"""The rules that read a reply's clauses: opt-out, sarcasm, and each clause's verdict, then the reply's label.

Negation ("не", "ни") flips the next content word within its clause. Opt-outs are looked for first, word by word
(`OPT_OUT_RULES`); then sarcasm through its fixed idioms; then each clause gets signals from its words
(`CLAUSE_RULES`, in order, the first rule that takes a word ends that word's turn), a verdict from its signals
(`verdict`, a pure function), and the reply a label from its verdicts (`decide`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from reactivation.replies.labels import ReplyLabel
from reactivation.replies.lexicon import (
    ABLE,
    ACK,
    ADDRESS,
    AGREE,
    ANSWER_LATER,
    ASK_VERBS,
    AUTHORITY,
    BOOK,
    BOOK_PAST,
    BOOK_STEM,
    BOOKING_OBJECTS,
    BUSY_CONTEXT,
    BUSY_DOING,
    BUSY_NOW,
    BUSY_PLACES,
    CALLBACK,
    COMPANIONS,
    DAY_WORDS,
    DEFER,
    ERASE,
    ERASE_OBJECTS,
    FED_UP,
    FED_UP_ELSEWHERE,
    FILLERS,
    FOOT_CONTEXT,
    GO_AWAY,
    HABITUAL,
    HAGGLE,
    HARDSHIP,
    HOURS,
    INFO_WORDS,
    LATER_WORDS,
    LOOK_UP,
    MESSAGES_NOT_WANTED,
    MONTHS,
    MSG_NOUNS,
    MSG_VERBS,
    NEGATORS,
    NOTED,
    OTHER_PLACE,
    PASS_ON,
    PASSING,
    PRICE,
    QUIET,
    REFUSE,
    SARCASM_CUES,
    SARCASM_RUN,
    SARCASM_WORDS,
    SEASONS,
    SERVICE_VERBS,
    SERVICE_WORDS,
    SLOT_CUES,
    SLOT_NOUNS,
    STOP_WORDS,
    TALK,
    TIME_AFTER,
    TIME_PREPOSITIONS,
    UNHAPPY_NEGATED,
    WANT,
    WEEKDAYS,
    WITHDRAW,
    WRITE_LATER,
)
from reactivation.replies.normalization import Clause, Token, Word, known, normalize_word
from reactivation.replies.times import named_time

# --- Where a rule looks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyFacts:
    """What the rules read once per reply."""

    wrong_number: bool = False  # someone made a mistake ("вы ошиблись номером")
    busy_context: bool = False  # where the client is busy ("на работе", "за рулём")
    has_msg: bool = False  # the reply speaks of messages
    writes: bool = False  # it asks to be written to ("не звоните, лучше напишите")
    thought: bool = False  # "подумала, что спам": what the client thought, not what they say now
    words: frozenset[str] = frozenset()  # every word as normalized
    booking_object: bool = False  # "запись", "бронь": what "удалите" deletes when it is no opt-out
    calls_back: bool = False  # "я сама наберу": the client will call, so "не звоните" asks for no call now
    cancels: bool = False  # "удалите", "отмените", "перенесите": about a booking there is
    passing: bool = False  # a reason that passes: a trip, an illness, a baby
    names_time: bool = False  # a time for later: "не беспокойте до лета" is not_now, not an opt-out
    asks_to_write: bool = False  # "пишите сколько стоит", "напишите в телеграм": writing is wanted, of something else
    books: bool = False  # a booking asked for ("запишите к Оле"): whoever books has not withdrawn consent
    wants_visit: bool = False  # "хочу записаться", "есть окно?": a visit wanted, so a "не пишите" is about a topic
    asks_to_call: bool = False  # "лучше позвоните": a call asked for instead
    turns: bool = False  # a later clause turns with "но"/"а" ("отписаться хотела, но раз скидка — давайте")
    discount: bool = False  # a discount or a percentage is spoken of ("10%? вау, щедро")
    wants_messages: bool = False  # "хочу получать только про акции": some messages are wanted

    @classmethod
    def of(cls, clauses: list[Clause]) -> ReplyFacts:
        """The facts of a reply's clauses (already negated)."""
        tokens = [t for c in clauses for t in c.tokens]
        return cls(
            wrong_number=any(t.has("ошибиться") for t in tokens),
            busy_context=any(t.has(BUSY_CONTEXT) for t in tokens),
            has_msg=any(_speaks_of_messages(t) and not (t.word and t.word.past) for t in tokens),
            writes=any(t.has({"писать", "написать"}) and not t.negated for t in tokens),
            thought=any(t.has({"думать", "подумать", "решить"}) and t.word is not None and t.word.past for t in tokens),
            names_time=named_time(clauses) is not None,
            asks_to_write=any(_imperative(t, {"писать", "написать"}) for t in tokens),
            books=any(_imperative(t, BOOK) or (BOOK_STEM.match(t.text) and _imperative(t, t.lemma)) for t in tokens),
            turns=any(c.contrast for c in clauses[1:]),
            wants_visit=any(
                not t.negated and (t.has(SLOT_NOUNS) or (t.has(BOOK) and t.word is not None and t.word.infinitive))
                for t in tokens
            ),
            asks_to_call=any(_imperative(t, {"позвонить", "звонить", "перезвонить", "набрать"}) for t in tokens),
            discount=any(t.has({"скидка", "акция"}) or t.special == "percent" for t in tokens),
            wants_messages=any(t.has(WANT) and not t.negated for t in tokens)
            and any(t.has({"получать", "получить"}) and not t.negated for t in tokens),
            words=frozenset(t.text for t in tokens),
            booking_object=any(t.has(BOOKING_OBJECTS) for t in tokens),
            cancels=any(t.has(ERASE | {"отменить", "отменять", "перенести", "переносить"}) for t in tokens),
            passing=any(t.has(PASSING) for t in tokens),
            calls_back=any(
                t.has(WRITE_LATER | {"набрать"}) and t.word is not None and t.word.first_person and t.word.future
                for t in tokens
            ),
        )


def _imperative(t: Token, lemmas: frozenset[str] | set[str] | str) -> bool:
    """An affirmed imperative of one of `lemmas` ("пишите", "запишите")."""
    return t.word is not None and t.word.imperative and not t.negated and t.has(lemmas) and not t.word.first_person


def _speaks_of_messages(t: Token) -> bool:
    return t.has(MSG_VERBS) or t.has(MSG_NOUNS) or t.has({"получать", "получить"})


@dataclass(frozen=True)
class ClauseFacts:
    """What the rules read once per clause."""

    tokens: list[Token]
    texts: list[str]
    lemmas: frozenset[str]
    question: bool
    recently: bool  # "уже", "недавно", "вчера": a past verb tells what happened, not what is wished
    has_msg: bool  # the clause speaks of messages ("не пишите", "сообщения не нужны")
    reply: ReplyFacts = field(default_factory=lambda: ReplyFacts())

    @property
    def wrong_number(self) -> bool:
        return self.reply.wrong_number

    @property
    def busy_context(self) -> bool:
        return self.reply.busy_context

    @classmethod
    def of(cls, clause: Clause, reply: ReplyFacts | None = None) -> ClauseFacts:
        """The facts of one clause, with those of the whole reply."""
        tokens = clause.tokens
        texts = [t.text for t in tokens]
        return cls(
            tokens=tokens,
            texts=texts,
            lemmas=frozenset(t.lemma for t in tokens),
            question=clause.question,
            recently=bool({"уже", "недавно", "вчера"} & set(texts)),
            has_msg=any(_speaks_of_messages(t) for t in tokens),
            reply=reply or ReplyFacts(),
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


_MODALS = frozenset({"мочь", "смочь", "получаться", "получиться", "успеть", "успевать"})


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
        for k, target in enumerate(tokens[i + 1 :], start=i + 1):
            if target.text in NEGATORS:
                continue
            if target.text in FILLERS and target is not tokens[-1]:
                continue
            target.negated = True
            after = tokens[k + 1] if k + 1 < len(tokens) else None
            if target.has(_MODALS) and after is not None and after.word is not None and after.word.infinitive:
                # "не получается выбраться": what cannot be done is refused too ("не могу писать" asks for nothing)
                after.negated = not after.has(MSG_VERBS)
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
    if prev is not None and (prev.text in {"до", "без"} or prev.has({"какой", "который", "прошлый"})):
        return False  # "на работе до вечера": a limit; "без выходных": none; "до какого числа": a question
    if t.has(WEEKDAYS) or t.text in {"днем", "днём"}:
        return True
    if prev is not None and prev.has({"добрый", "хороший", "прекрасный", "удачный"}):
        return False  # "доброе утро", "хорошего дня"
    if t.has(DAY_WORDS) and t.lemma != "неделя":
        return True
    if (
        t.has({"неделя", "неделька"})
        and prev is not None
        and prev.has({"этот", "следующий", "через", "ближайший", "на"})
    ):
        return True
    if t.has("месяц") and prev is not None and prev.has({"этот", "ближайший"}):
        return True
    if t.has("день") and prev is not None and prev.has({"другой", "любой", "какой", "этот", "следующий", "ближайший"}):
        return True
    if t.text.isdigit() and len(t.text) <= 2:  # noqa: SIM102
        if (prev is not None and prev.text in TIME_PREPOSITIONS) or (nxt is not None and nxt.text in TIME_AFTER):
            return True
    if t.has("мастер") and prev is not None and prev.text in {"к", "ко", "у"}:
        return True  # "к мастеру"; a master only mentioned ("мастер была грубая") proposes nothing
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
    if at.nxt is not None and at.nxt.text in {"кран", "фильтр", "лист"}:
        return False  # "стоп-кран сорван", "спам-фильтр вас пропустил"
    if t.text == "отпишитесь" and at.facts.reply.words & {"когда", "если"}:
        return False  # "отпишитесь, когда будет окно": write back
    to_me = at.nxt is not None and at.nxt.text in {"мне", "в"} and not {"от", "из"} & set(at.facts.texts)
    asks = {"когда", "если", "что", "сколько", "какие", "где", "личку", "лс", "прайс"}
    if t.has("отписаться") and to_me and (at.facts.reply.words & asks or at.facts.reply.wants_visit):
        return False  # "отпишите мне, когда будет окно" (write to me), not "отпишите меня"
    if t.text.startswith(("игнор", "бан", "чс")) and at.facts.question:
        return False  # "я в игноре была? давно не писали"
    if t.has("спам") and at.facts.reply.thought:
        return False  # "сначала подумала, что спам, а это вы"
    if t.has("спам") and at.facts.reply.turns and at.facts.reply.words & {"приятно", "помните", "спасибо"}:
        return False  # "спам конечно, но приятно, что помните"
    if at.facts.reply.wants_messages:
        return False  # "как отписаться, если я хочу получать только про акции на маникюр?"
    if _refused_by_me(at) or _wished_once(at) or (at.word.past and "бы" in at.facts.texts):
        return False  # "отписалась бы, но вы мне нравитесь": a wish not acted on
    return not (t.has("отписаться") and at.word.first_person and at.word.future and _answers_later(at))


def _refused_by_me(at: At) -> bool:
    """The client's own negated verb governs the stop word: "в спам не кидаю", "отписываться не буду", "блокировать
    не стану", "спам не люблю, но вам прощаю" say what the client will not do, not what we must stop."""
    return any(
        o.negated and o.word is not None and o.word.first_person and not o.word.past and not o.has(MESSAGES_NOT_WANTED)
        for o in at.tokens
    )


def _wished_once(at: At) -> bool:
    """A wish told in the past and turned by "но"/"а": "отписаться хотела, но раз скидка — давайте"."""
    wished = any(o.has(WANT | {"собираться", "думать"}) and o.word is not None and o.word.past for o in at.tokens)
    return wished and at.facts.reply.turns


def _fed_up(at: At) -> bool:
    """Fed up with us ("вы надоели", "достали уже", "заблокирую", "буду жаловаться"), not with anything else."""
    t = at.t
    if t.text in {"поперёк", "поперек"} and at.nxt is not None and at.nxt.text == "горла":
        return at.facts.reply.has_msg  # "ваши рассылки уже поперёк горла"
    if not t.has(FED_UP) or t.negated or _refused_by_me(at):
        return False
    if t.has("достать") and t.text not in {"достали", "достал", "достала", "достало"}:
        return False
    if any(o.has(FED_UP_ELSEWHERE) for o in at.tokens) and not at.facts.reply.has_msg:
        return False
    if t.has({"пожаловаться", "жаловаться"}) and any(o.has(AUTHORITY) for o in at.tokens):
        return True
    if t.has({"заблокировать", "блокировать"}) and at.nxt is not None and at.nxt.has("вы"):
        return True  # "заблокирую вас сейчас"
    rest = _content(at.tokens[: at.i] + at.tokens[at.i + 1 :], QUIET | {"как", "так", "ваш", "этот", "буду", "на"})
    yours = any(o.has("свой") and p.text in {"с", "со"} for p, o in pairwise(at.tokens))  # "со своими скидками"
    return at.facts.reply.has_msg or "вы" in at.facts.texts or yours or not rest


def _answers_later(at: At) -> bool:
    """A reply promised ("потом отпишусь", "посмотрю расписание и отпишусь"), nothing about messages."""
    later = at.facts.reply.busy_context or any(
        o.text in LATER_WORDS or (o.has(LOOK_UP) and o.word is not None and o.word.first_person and o.word.future)
        for o in at.tokens
    )
    return later and not at.facts.has_msg and not any(o.text in {"от", "из"} for o in at.tokens)


def _do_not_message(at: At) -> bool:
    """A negated messaging verb ("не пишите", "не беспокойте"); "не звоните, пишите" asks for another channel."""
    t = at.t
    if not (t.negated and t.has(MSG_VERBS) and not at.word.first_person) or at.word.past:
        return False  # "давно не писали": what was, not what we must stop
    if not (at.word.imperative or at.word.infinitive) and "вы" in at.facts.texts[: at.i]:
        return False  # "вы мне не надоедаете": said of us, asks nothing
    reply = at.facts.reply
    if reply.names_time:
        return False  # "не пишите до января": later, not never
    # "не звоните, лучше пишите", "не звоните, я на работе", "не звоните, я сама наберу": another channel or time
    if t.has("звонить") and (reply.writes or reply.busy_context or reply.calls_back):
        return False
    if reply.books and set(at.facts.texts) & {"про", "о", "об", "насчёт"}:
        return False  # "больше не пишите про ресницы, а на маникюр запишите": a topic, and a booking
    if _another_channel(reply):
        return False  # "не пишите мне больше смс, только вотсап"
    when = any(o.has(DAY_WORDS | WEEKDAYS) or o.text in {"рано", "поздно", "ночью", "часто"} for o in at.tokens)
    if when and "никогда" not in reply.words:
        return False  # "больше не пишите мне в 7 утра": when, not never
    if reply.words & {"больше", "никогда"} or set(at.facts.texts) & {"вообще", "совсем"}:
        return True  # "вообще не пишите" (not "но вообще да, хочу записаться")
    if reply.asks_to_write or reply.books or reply.wants_visit:
        return False  # "не присылайте прайс, просто запишите к Оле", "не пишите, что скидка, пишите сколько стоит"
    if not t.has("звонить") and reply.asks_to_call:
        return False  # "не пишите в WhatsApp, лучше позвоните": another channel
    if when:
        return False  # "не пишите так рано утром", "в выходные не пишите", "так часто": when or how often, not never
    # "не пишите сейчас, я за рулём", "пока не беспокойте, я в декрете": a moment, or a reason that passes
    return not (reply.busy_context or (reply.words & {"пока", "сейчас", "щас"} and reply.passing))


_CHANNELS = frozenset({"вотсап", "ватсап", "whatsapp", "телеграм", "телеграмм", "телеграме", "вайбер", "viber"})


def _another_channel(reply: ReplyFacts) -> bool:
    """Another channel asked for: "только вотсап", "пишите в телеграм" (a "не пишите в вотсап" alone is a stop)."""
    return bool(reply.words & _CHANNELS) and (reply.asks_to_write or "только" in reply.words)


def _messages_not_wanted(at: At) -> bool:
    """Messages not wanted ("сообщения не нужны", "не надо мне ваших рассылок")."""
    t = at.t
    if not (t.negated and at.facts.has_msg and t.has(MESSAGES_NOT_WANTED)) or at.facts.reply.books:
        return False  # "не надо мне звонить, просто запишите на среду"
    if _another_channel(at.facts.reply):
        return False  # "не хочу получать смс, пишите в вотсап"
    # "не интересует ваше предложение" refuses the offer, not the messages
    return any(_speaks_of_messages(o) and not o.has("предложение") for o in at.tokens)


def _refuse_messages(at: At) -> bool:
    """Messages refused ("отказываюсь от рассылки", "против рассылок"); "откажусь от предложения" is no opt-out."""
    if not at.t.has({"отказаться", "отказываться", "против", "отказ"}) or at.t.negated:
        return False
    return any(o.has(MSG_NOUNS - {"предложение"}) for o in at.tokens)


def _angry(at: At) -> bool:
    """A law or an authority about the messages: "вы нарушаете закон о рекламе", "в чёрный список"."""
    t = at.t
    if t.has(AUTHORITY) and at.facts.reply.has_msg:
        return True
    if t.has(AUTHORITY - {"закон", "нарушать", "нарушение", "фз", "суд"}) and "напишете" in at.facts.reply.words:
        return True  # "ещё раз напишете — пойду в прокуратуру"
    # "в чёрный список" (not "я в чёрном списке у вас?")
    black = t.has("список") and at.prev is not None and at.prev.has("чёрный")
    return black and not at.facts.question and not _refused_by_me(at)  # "в чёрный список не добавлю, но …"


def _enough(at: At) -> bool:
    """Enough ("хватит", "прекратите") about messages, or alone."""
    t = at.t
    if not t.has({"хватить", "перестать", "прекратить", "достаточно"}) or t.negated:
        return False
    if at.nxt is not None and at.nxt.text == "ли":
        return False
    rest = _content(at.tokens[: at.i] + at.tokens[at.i + 1 :], QUIET)
    return at.facts.has_msg or not rest


def _erase_me(at: At) -> bool:
    """Erase me ("удалите мой номер", "уберите из рассылки", "удалите" alone)."""
    if not at.t.has(ERASE) or at.word.first_person or at.word.past or _refused_by_me(at):
        return False  # "удалять ваш номер не буду" keeps it
    if at.t.negated or at.word.third_person:
        return False  # "не удаляйте меня, просто сейчас не время"; "выпишут из больницы — напишу"
    if at.facts.reply.asks_to_write and any(o.has("старый") for o in at.tokens):
        return False  # "удалите старый номер, пишите на этот": a number changed
    rest = _content(at.tokens[: at.i] + at.tokens[at.i + 1 :], QUIET | {"из", "с", "от", "про", "обо", "о"})
    if any(o.has(ERASE_OBJECTS) for o in rest):
        return True
    if at.t.has("забыть"):
        # "забудьте, я передумала" lets a thing go; "забудьте про меня", "мой номер" are opt-outs
        return bool({"про", "обо", "о"} & set(at.facts.texts))
    return not rest and not at.facts.reply.booking_object  # "удалите, пожалуйста, мою запись" cancels a booking


def _never_subscribed(at: At) -> bool:
    """Never subscribed ("я не подписывалась", "не соглашалась на рассылку")."""
    t = at.t
    if at.facts.reply.books or at.facts.question:
        return False  # "я не подписывалась, но раз написали, запишите на среду"; "не подписывалась? вроде да"
    if t.negated and t.has({"подписываться", "подписаться"}):
        return True
    number = any(o.has("номер") for o in at.tokens)
    mine = not {"мне", "нам"} & set(at.facts.texts)  # "мне так и не дали номер мастера" is no opt-out
    if t.negated and at.word.past and t.has({"давать", "дать", "оставлять", "оставить"}) and number and mine:
        return True  # "я не давала свой номер", "номер я вам не оставляла"
    return t.negated and t.has({"соглашаться", "согласиться", "давать", "дать"}) and at.facts.has_msg


def _no_consent(at: At) -> bool:
    """No consent given ("я не давала согласия", "без моего согласия")."""
    if not at.t.has("согласие"):
        return False
    refused = any(o.negated and o.has({"давать", "дать", "спрашивать", "спросить"}) for o in at.tokens)
    return refused or any(p.text == "без" for p in at.before)


_END_PROCESSING = frozenset({"прекратить", "прекращать", "против", "уничтожить", "уничтожать"})


def _withdrawn(at: At) -> bool:
    """Consent withdrawn or personal data refused (152-FZ art. 9): "отзываю согласие", "прекратите обработку моих
    персональных данных", "отзыв согласия на обработку ПДн"."""
    t = at.t
    personal = t.text == "пдн" or (t.has("данные") and at.prev is not None and at.prev.has("персональный"))
    if not (t.has("согласие") or personal):
        return False
    if personal and any(o.negated and o.has({"обрабатывать", "обработать"}) for o in at.tokens):
        return True  # "не обрабатывайте мои персональные данные"
    verbs = WITHDRAW if t.has("согласие") else WITHDRAW | ERASE | _END_PROCESSING
    return any(o.has(verbs) and not o.negated for o in at.tokens)


def _wrong_number(at: At) -> bool:
    """Not our client's number ("вы ошиблись номером", "это не мой номер", "чужой номер")."""
    if not at.t.has("номер"):
        return False
    wrong = any(p.has({"неправильный", "чужой"}) or (p.has("тот") and p.negated) for p in at.before)
    if at.facts.wrong_number or wrong:
        return True  # "вы ошиблись номером", "не тот номер" (not "у меня тот же номер")
    if any((o.negated and o.has("принадлежать")) or o.has({"владелец", "хозяин"}) for o in at.tokens):
        return True  # "этот номер больше не принадлежит Марине", "номер сменил владельца"
    if any(o.has("принадлежать") for o in at.tokens) and any(o.has({"другой", "чужой"}) for o in at.tokens):
        return True  # "этот номер принадлежит другому человеку"
    around = at.before + at.tokens[at.i + 1 : at.i + 3]
    if any(p.has("тот") and p.negated for p in at.tokens[at.i + 1 : at.i + 3]):
        return True  # "номер не тот"
    changed = any(o.has({"поменять", "сменить", "поменяться", "смениться"}) for o in at.tokens)
    if {"недавно", "у", "меня", "этот"} <= set(at.facts.texts) and not changed:
        return True  # "у меня этот номер недавно": it was someone else's (not "у меня недавно сменился номер")
    return any(p.has("мой") and p.negated for p in around)  # "это не мой номер", "номер не мой"


def _cancel(at: At) -> bool:
    """A subscription cancelled ("отмените подписку", "отключите меня от рассылки")."""
    t = at.t
    if not t.has({"отменить", "отменять", "отключить", "отключать", "отмена"}) or at.word.first_person or t.negated:
        return False
    return any(o.has(MSG_NOUNS - {"предложение"}) or o.has("подписка") for o in at.tokens)


def _no_messages(at: At) -> bool:
    """No messages ("без рассылок, пожалуйста", "нет больше сообщений")."""
    if at.t.text not in {"без", "нет"}:
        return False
    return any(o.has(MSG_NOUNS - {"предложение"}) for o in at.tokens[at.i + 1 : at.i + 3])


def _leave_me_alone(at: At) -> bool:
    """ "оставьте меня в покое", "вы навязываетесь"."""
    if at.t.has("покой") and any(o.has("оставить") for o in at.tokens):
        return True
    return at.t.has({"навязываться", "навязчивый", "навязчиво"}) and not at.t.negated


def _not_our_client(at: At) -> bool:
    """Someone else got the message ("я не ваш клиент", "это не Анна", "вы пишете не тому человеку")."""
    if at.t.has({"клиент", "клиентка"}) and at.prev is not None and at.prev.has("ваш") and at.prev.negated:
        # "я не ваш клиент" (not "я не ваш клиент уже год, хожу к мастеру у дома": another master)
        return not ("уже" in at.facts.texts and at.facts.reply.words & {"хожу", "стригусь", "крашусь"})
    if at.word.name_first and at.prev is not None and at.prev.has("никакой") and "нет" in at.facts.texts:
        return True  # "тут нет никакой Алины"
    if at.t.negated and at.word.name_first and at.i <= 3 and at.tokens[0].text in {"это", "тут", "здесь"}:
        return True  # "это не Светлана", "это больше не Анна"
    if at.t.text in {"таких", "такой"} and at.nxt is not None and at.nxt.text == "нет" and not at.facts.question:
        # "вы ошиблись, тут таких нет" and no more (not "тут таких цен нигде нет", "такого нет" of a thing)
        return set(at.facts.texts) <= {"тут", "здесь", "у", "нас", "меня", "таких", "такой", "нет", "вообще"}
    # "вы пишете не тому человеку", "вы не туда пишете"
    elsewhere = at.t.has("туда") or (at.t.has("тот") and at.nxt is not None and at.nxt.has("человек"))
    return at.t.negated and elsewhere and at.facts.reply.has_msg


def _hostile(at: At) -> bool:
    """A hostile brush-off ("идите лесом" and worse), or "сколько можно" about messages."""
    t, nxt = at.t, at.nxt
    if nxt is None:
        return False
    if t.text in {"идите", "иди", "пошли", "пошел", "пошла", "катитесь"}:
        # "пошли вы", "идите лесом", "к чёрту"; "пошли к вам на маникюр" is an invitation
        after = at.tokens[at.i + 1 : at.i + 3]
        return nxt.text in {"вы", "ты"} or nxt.text.startswith("нах") or any(o.has(GO_AWAY) for o in after)
    if not (t.text == "сколько" and nxt.text == "можно"):
        return False
    rest = set(at.facts.reply.words) - {"ну", "уже", "же", "сколько", "можно", "блин", "господи", "девочки"}
    return at.facts.reply.has_msg or not rest  # "сколько можно писать", "ну сколько можно уже"


OPT_OUT_RULES: tuple[Callable[[At], bool], ...] = (
    _stop_word,
    _fed_up,
    _refuse_messages,
    _angry,
    _not_our_client,
    _cancel,
    _no_messages,
    _leave_me_alone,
    _do_not_message,
    _messages_not_wanted,
    _enough,
    _erase_me,
    _never_subscribed,
    _no_consent,
    _withdrawn,
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
    reply = ReplyFacts.of(clauses)
    for position, clause in enumerate(clauses):
        if _stop_as_interjection(clauses, position):
            continue
        facts = ClauseFacts.of(clause, reply)
        if any(rule(at) for at in _words_of(facts) for rule in OPT_OUT_RULES):
            return True
    return _spelled_apart(clauses)


def _stop_as_interjection(clauses: list[Clause], position: int) -> bool:
    """A "стоп" that means "wait" ("Стоп, а сколько стоит?", "Ой, стоп, это же вы!")."""
    if position + 1 >= len(clauses) or {t.text for t in clauses[position].tokens} - {"стоп", "ой", "так", "а"}:
        return False
    if "стоп" not in {t.text for t in clauses[position].tokens}:
        return False
    nxt = clauses[position + 1]
    return nxt.contrast or nxt.question or nxt.tokens[0].text in {"а", "я", "это", "так", "подождите"}


# --- Sarcasm ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Said:
    """The whole reply's words, for idioms that span clauses."""

    tokens: list[Token]
    texts: list[str]
    books: bool  # a booking verb anywhere: "бегу записываться" is no sarcasm

    def has(self, lemmas: frozenset[str] | set[str] | str) -> bool:
        return any(t.has(lemmas) for t in self.tokens)


def _running(said: _Said, t: Token) -> bool:
    """Running to book ("бегу уже", "бегу и падаю", "ага, конечно, бегу") is sarcasm without a booking verb."""
    if not (t.word and t.has(SARCASM_RUN) and (t.word.first_person or t.word.past)) or said.books:
        return False
    cue = any(o.text in SARCASM_CUES or o.has("падать") for o in said.tokens)
    return cue or {"ага", "конечно"} <= set(said.texts)


def _dreaming(said: _Said, t: Token) -> bool:
    """Dreams ("всю жизнь мечтала", "только об этом и мечтала", "мечтаю, ага", "в следующей жизни")."""
    if t.has("жизнь") and said.tokens.index(t) and said.tokens[said.tokens.index(t) - 1].has("следующий"):
        return True
    i = said.tokens.index(t)
    if t.has("ждать") and t.word is not None and t.word.past and not said.books and i >= 2:
        # "только вас и ждала", "только этого и ждала"
        return said.tokens[i - 1].text == "и" and "только" in said.texts[max(0, i - 4) : i]
    if not t.has("мечтать") or t.negated or said.books:
        return False
    cues = {"жизнь", "только", "ага", "конечно", "опять", "снова"}  # "как раз мечтаю опять час ждать"
    return bool(cues & set(said.texts) | {o.lemma for o in said.tokens} & {"жизнь"})


def _idiom(said: _Said, t: Token, prev: str) -> bool:
    """Fixed idioms ("разбежалась", "ага, щас", "ну-ну", "делать мне больше нечего", "сейчас всё брошу")."""
    if (
        t.text in SARCASM_WORDS
        or (t.text == "щас" and prev in {"ага", "угу", "ну", "да"})
        or (t.text == "ну" and prev == "ну")
    ):
        return True
    if t.has("нечего") and said.has("делать"):
        return True
    if t.has("свистнуть") and said.has("рак"):
        return True  # "когда рак на горе свистнет"
    if t.has("куча") and said.has("время") and ("же" in said.texts or "конечно" in said.texts):
        return True  # "у меня же куча свободного времени"
    return bool(t.word and t.has("бросить") and t.word.first_person and t.word.future and "все" in said.texts)


def is_sarcastic(clauses: list[Clause]) -> bool:
    """A refusal dressed as agreement, through its fixed idioms ("ага, щас", "бегу уже", "разбежалась")."""
    tokens = [t for c in clauses for t in c.tokens]
    texts = [t.text for t in tokens]
    said = _Said(tokens, texts, any(t.has(BOOK) for t in tokens))
    for i, t in enumerate(tokens):
        if _idiom(said, t, texts[i - 1] if i else "") or _running(said, t) or _dreaming(said, t):
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
    request: bool = False  # asks to book ("запишите", "хочу"), not just promises to ("запишусь")
    later: bool = False  # names a month, a season or the holidays: too far off to book by
    maybe: bool = False  # "может": a day after it is a guess, not a proposal
    busy: bool = False  # cannot answer now ("за рулём", "отвечу позже")
    remind: bool = False  # asks to be written to later ("напишите через неделю")
    habit: bool = False  # tells a habit ("хожу к мастеру на дому"): a master named is no proposal
    after: bool = False  # a day named as a limit ("только после 15-го"), a proposal only next to agreement
    question: bool = False  # the clause ends with a question mark
    condition: bool = False  # asks on what terms ("можно с ребёнком?", "мастер может приехать на дом?")


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


_FINE_AS_IS = frozenset({"хорошо", "нормально", "норм", "неплохо", "красиво", "отлично"})


def _idioms(at: At, s: Signals) -> bool:
    """Idioms: "да ну" and "у меня всё есть" refuse, "нельзя ли" asks."""
    nxt = at.nxt
    if at.t.text == "есть" and at.prev is not None and at.prev.text in {"все", "всё"} and not at.facts.question:
        s.refuse = True
        return True
    if nxt is None:
        return False
    if at.t.text == "да" and nxt.text == "ну":
        s.refuse = True
        return True
    if at.t.text == "ни" and nxt.text == "к" and at.i + 2 < len(at.tokens) and at.tokens[at.i + 2].text == "чему":
        s.refuse = True  # "ни к чему мне это"
        return True
    if at.t.text == "нельзя" and nxt.text == "ли":
        s.agree = True
        return True
    fine = at.tokens[at.i + 2] if at.i + 2 < len(at.tokens) else None
    if at.t.text == "и" and nxt.text == "так" and fine is not None and fine.text in _FINE_AS_IS:
        s.refuse = True  # "мне и так хорошо": nothing needed, and the "хорошо" agrees to nothing
        fine.negated = True
        return True
    return False


def _condition(at: At, s: Signals) -> bool:
    """Terms asked about: "можно с ребёнком?", "а с собакой к вам можно?", "мастер может приехать на дом?"."""
    nxt = at.nxt
    if not at.facts.question or nxt is None or any(o.has(SERVICE_WORDS - {"мастер"}) for o in at.tokens):
        return False  # "можно на стрижку с мужем вдвоём?" books two
    if (at.t.text in {"с", "со"} and nxt.has(COMPANIONS)) or (at.t.text == "на" and nxt.has({"дом", "дому"})):
        s.condition = True
        return True
    return False


def _just_right(at: At) -> bool:
    """ "Как раз": the circumstance suits ("давайте, я как раз отпуск взяла", "как раз зарплата пришла")."""
    texts = at.facts.texts
    return any(a == "как" and b == "раз" for a, b in pairwise(texts))


def _haggle(at: At, s: Signals) -> bool:
    """A discount haggled over ("10% мало", "только если скидка 30%", "если скидка будет больше") refuses."""
    if not at.t.has(HAGGLE) or at.t.negated or not at.facts.reply.discount:
        return False
    s.refuse = True
    return True


def _without(at: At, s: Signals) -> bool:
    """Without: "без шансов", "без вариантов", "пока без меня", "пашу без выходных", "никаких процедур" refuse."""
    nxt = at.nxt
    wanted = {"шанс", "вариант", "я", "выходной"}
    if nxt is None or not (
        (at.t.text == "без" and nxt.has(wanted)) or (at.t.has("никакой") and nxt.has(SERVICE_WORDS))
    ):
        return False  # also "пока никаких процедур"
    s.refuse = True
    return True


def _habit(at: At, s: Signals) -> bool:
    """A habit ("стригусь у подруги") asks for nothing; a habit given up ("я больше не крашусь") refuses."""
    w = at.word
    if at.t.has({"перейти", "переходить"}) and "к" in at.facts.texts and not at.t.negated:
        s.habit = True  # "я к Кате перешла": a master of the client's now, no proposal
        return True
    if at.t.has({"бросить", "завязать"}) and w.past and not at.t.negated and at.nxt is not None:
        s.refuse = True  # "я бросила наращивание": a habit given up
        return True
    if not at.t.has(HABITUAL | SERVICE_VERBS) or w.infinitive or w.future or w.imperative or w.past:
        return False
    s.refuse = s.refuse or at.t.negated
    s.habit = s.habit or not at.t.negated
    return True


def _booking(at: At, s: Signals) -> bool:
    """A booking verb: a wish, a refusal when negated, "already" when past, "сама запишусь" a deferral."""
    t, w, texts = at.t, at.word, at.facts.texts
    if not (t.has(BOOK) or BOOK_STEM.match(t.text)):
        return False
    is_past = w.past or (not known(t.text) and bool(BOOK_PAST.search(t.text)))
    if w.third_person or "если" in texts[: at.i]:
        return True  # "как дети в школу пойдут", "только если в гости приеду": someone else, or a mere condition
    if t.negated:
        s.refuse = True
    elif is_past and "бы" in texts:
        s.book = True  # "я бы записалась" is a wish
    elif is_past and (t.has({"записаться", "записать", "записываться"}) or BOOK_STEM.match(t.text)):
        s.already = True
    elif t.lemma == "запись":
        already = (at.prev is not None and at.prev.text == "меня") or "уже" in texts or "у" in texts[: at.i]
        if already or (at.facts.reply.cancels and not at.facts.reply.books):
            # "у меня запись", "удалите мою запись на завтра": a booking there is, to confirm or to change
            s.already = True
        else:
            s.agree = True
    elif w.past:
        s.already = s.already or at.facts.recently
    elif w.first_person and w.future and NOTED & set(texts):
        s.ack = True  # "запишу себе", "запишу в календарь": noted, not booked
    elif w.first_person and w.future and {"сама", "сам", "тогда"} & set(texts):
        s.defer = True  # "сама запишусь", "зарплата 10-го, тогда и запишусь"
    else:
        s.book = True
        s.request = s.request or w.imperative or w.infinitive
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
        s.request = True
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


def asked_of_salon(t: Token, before: list[str], texts: list[str], *, question: bool) -> bool:
    """A move asked of the salon: "вы переехали?", "или переехали" (not "вы знаете, я переехала")."""
    if not t.has({"переехать", "переезжать"}) or {"я", "мы"} & set(texts):
        return False
    return bool({"вы", "или"} & set(before)) and (question or "или" in texts)


def _refusal_word(at: At, s: Signals) -> bool:
    """A refusal ("дорого", "отпуск", "против"), agreement when negated ("не против")."""
    if _just_right(at) and at.t.has(REFUSE) and not at.t.negated:
        return True
    if asked_of_salon(at.t, at.facts.texts[max(0, at.i - 2) : at.i], at.facts.texts, question=at.facts.question):
        return True  # "вы переехали или всё там же?": asked of the salon
    return _either(at, s, REFUSE, affirmed="refuse", negated="agree")


def _maybe(at: At, s: Signals) -> bool:
    """Maybe ("может") is neither yes nor no; a day after it is a guess."""
    if at.t.text != "может" or at.t.negated:
        return False
    s.maybe = True
    return True


# What a client must do before answering ("надо посоветоваться с мужем"): no agreement yet.
_CONSULT = LOOK_UP | {"посоветоваться", "советоваться", "обсудить", "спросить", "глянуть", "подумать"}


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
    elif t.has({"надо", "нужно"}) and any(o.has(_CONSULT) for o in at.tokens[at.i + 1 :]):
        pass  # "надо с мужем посоветоваться", "нужно посмотреть расписание": not yet an answer
    else:
        s.agree = True
        if t.has({"свободный", "свободно"}):
            s.time_ask = True
    return True


def _free(at: At, s: Signals) -> bool:
    """A free slot asked for ("свободно?"); "не свободна" refuses."""
    return _either(at, s, {"свободный", "свободно"}, affirmed="time_ask", negated="refuse")


def _agreement(at: At, s: Signals) -> bool:
    """Agreement ("да", "ок", "давайте"); negated, a refusal; "мы уже договорились" is done."""
    if at.t.has(AGREE) and at.word.past and "уже" in at.facts.texts and not at.t.negated:
        s.already = True
        return True
    if at.t.has(AGREE) and at.prev is not None and at.prev.text in {"все", "всё"}:
        return True  # "у меня всё хорошо", "всё отлично": no agreement
    return _either(at, s, AGREE, affirmed="agree", negated="refuse")


def _now(at: At, s: Signals) -> bool:
    """Now: "не сейчас" refuses; a bare "сейчас" means nothing by itself."""
    if not at.t.has("сейчас"):
        return False
    s.refuse = s.refuse or at.t.negated
    return True


def _later(at: At, s: Signals) -> bool:
    """Later ("потом", "позже", "напишу", "в другой раз"): a deferral; "подумаю", "посмотрим" are undecided."""
    t, w, prev = at.t, at.word, at.prev
    if (t.has("подумать") and not w.past) or (t.has("посмотреть") and w.first_person and w.future):
        s.ack = True  # "подумаю", "посмотрим": undecided, no answer yet (a time or a "нет" beside it refuses)
        return True
    deferred = (
        t.has(DEFER)
        or t.text in {"позже", "позднее", "попозже"}
        or (t.has("раз") and prev is not None and prev.has({"другой", "следующий"}))
    )
    if t.has({"написать", "напомнить", "напоминать"}) and w.imperative and not t.negated:
        s.remind = True  # "напишите через неделю", "напомните в январе": ask again later
        return True
    if t.has(WRITE_LATER) and w.first_person and w.future:
        # "напишу позже" puts the visit off ("на следующей неделе напишу": then, not a booking for then); in a busy
        # moment ("я за рулём, напишу позже") it puts off the answer.
        if at.facts.busy_context:
            s.busy = True
        else:
            s.defer = s.remind = True
        return True
    if deferred:
        s.defer = True
    return deferred


# Words of a lasting time: "занята" beside them is not a busy moment.
_LASTING = WEEKDAYS | DAY_WORDS | set(MONTHS) | set(SEASONS) | {"месяц", "неделя", "до", "пока", "весь", "год"}


def _busy_now(at: At, s: Signals) -> bool:
    """Busy: "за рулём", "на совещании", "минутку", "отвечу позже", "перезвоню", "не могу говорить"."""
    t, w, prev = at.t, at.word, at.prev
    cannot = any(
        (o.negated and o.has({"мочь", "смочь", "удобно", "удобный"})) or o.has({"неудобно", "некогда"})
        for o in at.before
    )
    lemmas = at.facts.lemmas
    # "сейчас занята", "сорри, занята": at the moment, not for a day or a month ("завтра занята", "выходные заняты")
    # "занята до вечера", "до обеда": today only, so a moment too
    today = any(a.text == "до" and b.has({"вечер", "обед", "ночь"}) for a, b in pairwise(at.tokens))
    timeless = not lemmas & _LASTING or (today and len(at.tokens) <= 4)
    busy_moment = bool(lemmas & {"сейчас", "минутка"} or timeless) and not lemmas & {"месяц", "неделя"}
    # "еду", "укладываю малыша", "кормлю": what the client is doing this minute ("еду к вам" comes)
    doing = (
        t.has(BUSY_DOING)
        and w.first_person
        and not (w.past or w.future)
        and not {"к", "грудью"} & set(at.facts.texts)  # "кормлю грудью" is a period, not a moment
    )
    busy = (
        t.has(BUSY_NOW)
        or (
            prev is not None
            and any(t.has(place) and prev.text == word for place, word in BUSY_PLACES.items())
            and not (at.nxt is not None and at.nxt.has({"месяц", "неделя", "день", "час", "год"}))  # "на пару месяцев"
        )
        or (
            t.has(ANSWER_LATER)
            and w.first_person
            and w.future
            and not t.negated
            and not lemmas & {"подумать", "сам", "сама"}  # "подумаю и отпишусь", "сама наберу": later, not busy
        )
        or (t.has(TALK) and cannot)
        or (t.has("занятый") and busy_moment)
        or doing
    )
    if busy:
        s.busy = True
    return busy


def _elliptical(nxt: Token | None) -> bool:
    """Nothing after "следующий" to name what is next ("в этом месяце никак, в следующем давайте")."""
    return nxt is None or nxt.word is None or nxt.has(NEGATORS | {"давайте", "может", "напишу", "можно"})


def _far_time(at: At, s: Signals) -> bool:
    """A month, a season, the holidays, next month: "later" (refused when negated: "не в январе")."""
    t, prev = at.t, at.prev
    before = [o.text for o in at.tokens[max(0, at.i - 3) : at.i]]
    far = (
        any(t.has(month) for month in MONTHS)
        or any(t.has(season) for season in SEASONS)
        or (t.has({"праздник", "майский", "новогодний", "каникулы"}) and "после" in before)
        or (t.has("год") and prev is not None and prev.has("новый"))
        or (t.has("месяц") and prev is not None and prev.has({"следующий", "через"}))
        or (
            t.has("следующий")
            and (at.nxt is None or at.nxt.word is None or at.nxt.has(NEGATORS | {"давайте", "может"}))
        )
    )
    if not far:
        return False
    if t.negated:
        s.refuse = True
    else:
        s.later = True
    return True


def _when_it_is(at: At, s: Signals) -> bool:
    """When it suits ("когда будет время", "как только смогу"): a deferral."""
    t, nxt, texts = at.t, at.nxt, at.facts.texts
    if t.text not in {"когда", "как"} or nxt is None or nxt.word is None:
        return False
    # "когда будет время", "как только смогу", "когда дети пойдут в школу": a future verb within the clause's start
    ahead = at.tokens[at.i + 1 : at.i + 4]
    ahead = ahead if not at.facts.question else ahead[:1]  # "когда вы сможете меня принять?" asks for a time
    future = {"будет", "будут"} & set(texts[at.i + 1 : at.i + 4]) or any(
        o.word is not None and o.word.future and not o.word.infinitive for o in ahead
    )
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
    """A call-back ("перезвоните"), or an acknowledgement ("ясно", "принято", "передам маме")."""
    t = at.t
    if t.has(CALLBACK) and not at.word.first_person and not t.negated:
        s.callback = True
        return True
    passes_on = t.has(PASS_ON) and at.word.first_person and at.word.future  # "перешлю мужу", "я передам"
    if (t.has(ACK) or passes_on) and not t.negated:
        s.ack = True
        return True
    return False


def _how_much_or_when(at: At, s: Signals) -> bool:
    """When and how much: "во сколько", "когда" ask for a time, "до скольки" the hours, "сколько" a price."""
    t, prev = at.t, at.prev
    if t.text == "когда":
        if not at.facts.question and any(o.word is not None and o.word.third_person for o in at.tokens[at.i + 1 :]):
            return True  # "в сентябре, когда дети в школу пойдут": when something happens, no question
        if at.facts.lemmas & {"скидка", "акция"}:
            s.info = True  # "а скидка когда сгорает?"
        else:
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
    if t.has(HOURS) and at.word.first_person:
        return True  # "работаю до вечера", "днём я работаю": the client's work, not the salon's hours
    if t.has(HOURS) and not any(o.word and o.word.name and o.title for o in at.tokens):
        # "мастер, которая у вас работала" tells a story; "вы работаете?" asks
        s.hours = not at.word.past
        return True
    return False


def _price_or_address(at: At, s: Signals) -> bool:
    """A question of price or place ("скидка" only when asked)."""
    t = at.t
    if t.has(PRICE) and not t.negated:
        if t.lemma not in {"скидка", "акция"} or at.facts.question:
            s.info = True
        return True
    if t.has(ADDRESS) and t.negated:
        s.refuse = True  # "не доеду до вас"
        return True
    if t.has(ADDRESS) or t.has(INFO_WORDS):
        s.info = True
        return True
    return False


def _negated_time(at: At, s: Signals) -> bool:
    """A negated day or time ("не в субботу", "не в этот раз", "уже не живу тут") refuses; other negated words pass."""
    t = at.t
    if not t.negated:
        return False
    if is_concrete(at.tokens, at.i) or t.has({"раз", "жить", "думать", "год", "видеть"}):
        s.refuse = True
    return True


def _concrete(at: At, s: Signals) -> bool:
    """A day, a time or a master ("после 15-го" a limit); "днём я работаю" tells the client's schedule."""
    mine = any(o.has(HOURS) and o.word is not None and o.word.first_person for o in at.tokens)
    # "в выходные не пишите": the day for messages, not for a visit
    for_messages = any(o.negated and o.has(MSG_VERBS) for o in at.tokens) and not any(o.has(BOOK) for o in at.tokens)
    # "кто это мне пишет в 8 утра?": when we wrote, asked about, not a time for a visit
    who_writes = "кто" in at.facts.texts and any(o.has(MSG_VERBS) and not o.negated for o in at.tokens)
    if is_concrete(at.tokens, at.i) and not mine and not for_messages and not who_writes:
        s.concrete = True
        # "после 15-го", "после 18"; "после обеда" is a time of day.
        s.after = s.after or (at.t.text.isdigit() and any(o.text == "после" for o in at.before))
    return True


def _hardship(at: At, s: Signals) -> bool:
    """Money, a complaint, a baby, shifts: "я бы с радостью, но зарплату задерживают" refuses."""
    t = at.t
    if t.has(HARDSHIP) or (t.negated and t.has(UNHAPPY_NEGATED)):
        s.refuse = s.refuse or not _just_right(at)
        return True
    if t.text == "кем" and t.negated and at.nxt is not None and at.nxt.has({"оставить", "оставлять"}):
        s.refuse = True  # "ребёнок маленький, не с кем оставить"
        return True
    return False


CLAUSE_RULES: tuple[ClauseRule, ...] = (
    _nyet,
    _idioms,
    _condition,
    _haggle,
    _without,
    _busy_now,
    _hardship,
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
    _far_time,
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
    elif t.emoji == "busy":
        s.busy = True
    if not t.negated and is_concrete(tokens, i):
        s.concrete = True
        s.after = s.after or (i > 0 and tokens[i - 1].text == "после")


def signals(clause: Clause, reply: ReplyFacts | None = None) -> Signals:
    """The signals of one clause (its words already negated), each word read by the first rule that takes it."""
    facts = ClauseFacts.of(clause, reply)
    s = Signals(refuse=negate(clause), proposes=bool({"можно", "давайте"} & facts.lemmas), question=clause.question)
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

VerdictKind = Literal["already", "busy", "refuse", "book", "concrete", "info", "ack", "agree", "none"]


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
    if s.busy and not (s.book or s.agree or s.time_ask or s.other):
        return Verdict("busy")
    if s.habit and not (s.book or s.agree or s.time_ask):
        return Verdict("none")
    concrete = s.concrete and not s.after
    if s.other or s.refuse:
        return Verdict("refuse")
    if s.defer and not s.concrete:
        return Verdict("refuse")
    # "напишите через неделю": write again then; "лучше напишите" only asks for another channel.
    if s.remind and (s.concrete or s.later) and not (s.book or s.agree or time_ask):
        return Verdict("refuse")
    # "может летом", "давайте в следующем месяце", "летом вернусь и запишусь": later, not a booking now.
    if s.later and not (s.concrete or time_ask or s.request or info or s.question):
        return Verdict("refuse")
    # "сейчас нет, может на следующей неделе": a guess at a day, not a proposal.
    if s.maybe and s.concrete and not (s.book or s.agree or time_ask or s.question):
        return Verdict("refuse")
    if s.callback:
        return Verdict("none")
    if s.condition and not s.concrete:
        return Verdict("info")
    # "но только после 15-го" is a limit: a day, but not one that outweighs a refusal elsewhere.
    if s.book or time_ask or proposal:
        return Verdict("book", concrete=concrete or time_ask)
    if info:
        return Verdict("info")
    if s.concrete:
        return Verdict("concrete", concrete=concrete)
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


_PERSONAL = {"я", "мне", "меня", "у", "мы", "нас", "нам"}


def _warm_refusals(clauses: list[Clause], verdicts: list[Verdict]) -> list[Verdict]:
    """Warm refusals: after a wish or a yes, a "но" clause that neither books nor asks tells why not.

    "Я бы с радостью, но у меня токсикоз", "хочу, но я сейчас в другой стране".
    """
    out = list(verdicts)
    for j in range(1, len(clauses)):
        if not clauses[j].contrast or verdicts[j].kind != "none":
            continue
        wished = any("бы" in [t.text for t in c.tokens] for c in clauses[:j])
        agreed = any(v.kind in {"agree", "book"} for v in verdicts[:j])
        personal = any(t.text in _PERSONAL for t in clauses[j].tokens)
        if wished or (agreed and personal):
            out[j] = Verdict("refuse")
    return out


_TIME_WORDS = WEEKDAYS | DAY_WORDS | {"месяц", "неделя", "выходной", "выходные"}


def _refused_times(clauses: list[Clause], said: list[Signals], verdicts: list[Verdict]) -> list[Verdict]:
    """A bare time that a refusal follows is the time refused ("В этом месяце, к сожалению, не получится"), and so is
    a bare time that echoes a refusal ("завтра никак, и послезавтра тоже")."""
    out = list(verdicts)
    for j, (clause, s) in enumerate(zip(clauses, said, strict=True)):
        timed = any(t.special in {"time", "date"} or t.has(_TIME_WORDS) for t in clause.tokens)
        if out[j].kind != "concrete" or s.agree or s.book or s.question or not timed:
            continue  # "только к Диме, к другим не пойду" names a master, not a time
        echoes = j > 0 and out[j - 1].kind == "refuse" and any(t.text in {"тоже", "также"} for t in clause.tokens)
        following = next((v.kind for v in out[j + 1 :] if v.kind in _DECISIVE), None)
        if echoes or following == "refuse":
            out[j] = Verdict("refuse")
    return out


@dataclass(frozen=True)
class Judgement:
    """The label the rules give a reply, with what each clause said (the reasons read them)."""

    label: ReplyLabel
    clauses: list[Clause]
    signals: list[Signals]
    verdicts: list[Verdict]
    sarcastic: bool = False


def judge(clauses: list[Clause]) -> Judgement:
    """The label of a reply's clauses: opt-out first, then sarcasm, then the clauses' verdicts."""
    for clause in clauses:
        negate(clause)
    if is_opt_out(clauses):
        return Judgement(ReplyLabel.OPT_OUT, clauses, [], [])
    reply = ReplyFacts.of(clauses)
    said = [signals(c, reply) for c in clauses]
    verdicts = _refused_times(clauses, said, _warm_refusals(clauses, [verdict(s) for s in said]))
    if is_sarcastic(clauses):
        return Judgement(ReplyLabel.NEGATIVE, clauses, said, verdicts, sarcastic=True)
    label = decide(verdicts, [c.contrast for c in clauses])
    if label is ReplyLabel.POSITIVE and _when_to_write(clauses, reply):
        label = ReplyLabel.NEUTRAL
    return Judgement(label, clauses, said, verdicts)


def _when_to_write(clauses: list[Clause], reply: ReplyFacts) -> bool:
    """ "не пишите в выходные, в будни можно": the time allowed is for our messages, not a visit asked for."""
    limited = any(t.negated and t.has(MSG_VERBS) for c in clauses for t in c.tokens)
    tokens = [t for c in clauses for t in c.tokens]
    masters = any(t.word is not None and t.word.name_first and t.title for t in tokens)  # "к Оле можно"
    booked = reply.books or reply.wants_visit or masters or any(t.has(WANT) and not t.negated for t in tokens)
    return limited and not booked and not any(c.question for c in clauses)
