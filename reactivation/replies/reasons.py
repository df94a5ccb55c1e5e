"""Why a client said no, or neither yes nor no: the reason that goes with a negative or neutral label.

The rules (rules.py) give the label; here the whole reply is read again for the reason, and three readings settle
a label the words alone leave open:
- a reply whose last clause asks the salon something ("не сейчас, но до какого числа скидка?") is a question, so
  the admin answers it, whatever came before;
- a reply that is busy and refuses nothing else ("за рулём, позже отвечу", "сейчас занята, отвечу вечером") is
  neutral: the client will answer;
- a reply that tells of another salon, doing it oneself, a move, a complaint or money, without asking anything,
  is a refusal even when its words looked neutral ("уже подстриглась в другом месте").

Negative reasons are tried in order, the first that holds wins (`NEGATIVE_REASONS`): a complaint first (the owner
must hear it whatever else was said), then a move, another salon, self-service, a named time for later, money,
any other sign of "later", and a plain no. Neutral: a question, busy, anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from reactivation.replies.labels import Classification, NamedTime, ReplyLabel, ReplyReason
from reactivation.replies.lexicon import (
    ADDRESS,
    ANOTHER,
    BOOK,
    BUSY_CONTEXT,
    CALLBACK,
    CANNOT,
    DAY_WORDS,
    FOR_GOOD,
    FRIENDS,
    GROWING,
    HABITUAL,
    HAGGLE,
    HARD_NO,
    HARDSHIP,
    HOURS,
    INFO_WORDS,
    LATER_CUES,
    MOVED,
    MOVED_FAR,
    MSG_VERBS,
    NOT_WANTED,
    PASSING,
    PLACES,
    PRICE,
    PRICE_CUES,
    QUESTION_WORDS,
    RELATIVES,
    SELF,
    SERVICE_VERBS,
    SERVICE_WORDS,
    TRIP,
    UNHAPPY,
    UNHAPPY_NEGATED,
    WEEKDAYS,
    WRITE_BACK,
)
from reactivation.replies.normalization import Clause, Token
from reactivation.replies.rules import Judgement, asked_of_salon
from reactivation.replies.times import named_time


@dataclass(frozen=True)
class Reply:
    """A reply's words as the reason rules read them: all of them, in order, with their clauses."""

    clauses: list[Clause]
    tokens: list[Token]
    when: NamedTime | None
    deferred: bool  # a clause puts it off ("сама запишусь", "позже")

    @classmethod
    def of(cls, j: Judgement) -> Reply:
        """The reply the rules judged (its clauses already negated)."""
        tokens = [t for c in j.clauses for t in c.tokens]
        deferred = any(s.defer or s.later or s.remind for s in j.signals)
        return cls(j.clauses, tokens, named_time(j.clauses), deferred)

    def has(self, words: frozenset[str] | set[str] | str) -> bool:
        """Whether any word of the reply, not negated, is one of `words`."""
        return any(t.has(words) and not t.negated for t in self.tokens)

    def around(self, i: int, width: int = 2) -> list[Token]:
        """The words within `width` of the i-th one (itself excluded)."""
        return self.tokens[max(0, i - width) : i] + self.tokens[i + 1 : i + 1 + width]


# --- Negative reasons --------------------------------------------------------------------------------------------


def _unhappy(r: Reply) -> bool:
    """A complaint about the last visit: "испортили стрижку", "мастер нахамила", "не понравилось"."""
    service = r.has(SERVICE_WORDS)
    for i, t in enumerate(r.tokens):
        if t.has(UNHAPPY) and not t.negated:
            return True
        if t.negated and t.has(UNHAPPY_NEGATED) and not r.has("цена"):
            return True  # "не понравилось", "не устроило качество" (but "цены не радуют" is money)
        if t.has({"плохо", "плохой", "болеть"}) and not t.negated and service:
            return True  # "плохо подстригли", "после маникюра ноготь болел неделю"
        if t.has("качество") and r.has({"упасть", "плохой", "низкий", "ухудшиться"}):
            return True
        before = [o.text for o in r.tokens[max(0, i - 2) : i]]
        last_time = any(o.has({"прошлый", "тот"}) for o in r.tokens[max(0, i - 2) : i])
        if t.has("раз") and last_time and ("после" in before or r.has("хватить")):
            return True  # "после прошлого раза", "после того раза", "мне прошлого раза хватило"
        if t.text == "себе" and before[-1:] == ["так"] and service:
            return True  # "обслуживание так себе"
        if t.negated and t.has({"то", "тот", "так", "слушать"}) and service:
            return True  # "сделали не то", "цвет не тот", "сделали не так", "мастер меня не слушала"
        if t.text == "того" and before[-1:] == ["после"] and i + 1 < len(r.tokens) and r.tokens[i + 1].text == "как":
            return True  # "после того как мне сожгли волосы"
        if t.has("случай") and "после" in before and last_time:
            return True  # "после того случая"
        if t.text == "очень" and t.negated and _last_time_said(r):
            return True  # "в прошлый раз было не очень"
        if t.text == "ногой" and before[-1:] == ["ни"]:
            return True  # "ни ногой"
        if t.has("рука") and r.has("место") and any(o.negated for o in r.tokens):
            return True  # "руки не из того места"
        done = any(o.has(SERVICE_VERBS) and o.word is not None and o.word.past for o in r.tokens)
        if t.text == "вместо" and done:
            return True  # "покрасили в рыжий вместо русого"
        if t.text == "сих" and before[-1:] == ["до"] and (done or r.has(SERVICE_WORDS)):
            return True  # "после вашей стрижки до сих пор отхожу"
        if t.has("держаться") and r.has(SERVICE_WORDS) and r.has({"день", "неделя", "два", "три"}):
            return True  # "маникюр держался два дня"
        if t.has("телефон") and r.has("сидеть") and r.has(PLACES):
            return True  # "мастер весь сеанс сидела в телефоне"
        waited = t.has("ждать") and t.word is not None and t.word.past and not t.negated
        if waited and r.has({"минута", "час", "полчаса", "полтора", "сорок"}):
            return True  # "ждала мастера сорок минут", "я час ждала"
    return False


def _last_time_said(r: Reply) -> bool:
    """ "в прошлый раз", "в тот раз": the last visit is spoken of."""
    return any(a.has({"прошлый", "тот"}) and b.has("раз") for a, b in pairwise(r.tokens))


def _is_place(r: Reply, i: int) -> bool:
    """A town or a country: "в Питере", "в другом городе" ("к Лене" is a master, not the river)."""
    t = r.tokens[i]
    # A place name after "в", "на", "из" ("на Урале", not "ращу косу"); "к Лене" is a master.
    located = i > 0 and r.tokens[i - 1].text in {"в", "во", "на", "из"}
    abroad = t.has("граница") and i > 0 and r.tokens[i - 1].text == "за"  # "за границей"
    return (t.word is not None and t.word.place and located) or t.has({"город", "страна"}) or abroad


def _moved(r: Reply) -> bool:
    """A move: "переехала", "живу теперь в Казани", "больше не живу в этом городе", "уехала насовсем"."""
    for i, t in enumerate(r.tokens):
        # "мой мастер переехала в другой салон"; "сменила место жительства" is the client's move
        master_moved = any(o.has(PLACES) for o in r.tokens[max(0, i - 3) : i]) and not t.has("жительство")
        # "вы переехали или всё там же?", "или переехали": asked of the salon
        before = [o.text for o in r.tokens[max(0, i - 2) : i]]
        ours = asked_of_salon(t, before, [o.text for o in r.tokens], question=any(c.question for c in r.clauses))
        if t.has(MOVED) and not t.negated and not master_moved and not ours:
            return True  # "я переехала" (not "мой мастер переехала в другой салон")
        if _is_place(r, i) and (
            (t.negated and r.has({"больше", "уже"}))  # "я больше не в Москве"
            # "я в Питере теперь" (not "за границей надолго, вернусь летом": a trip)
            or (any(o.text in {"теперь", "надолго"} for o in r.around(i, 5)) and not r.has("вернуться"))
            or (any(o.text == "уже" for o in r.around(i, 3)) and r.has({"я", "мы"}) and not r.has(PLACES))
            or (t.has({"город", "страна"}) and any(o.has({"сменить", "поменять"}) for o in r.around(i, 2)))
        ):
            return True
        around = r.around(i, 3)
        out_of_town = any(a.text == "за" and b.has("город") for a, b in pairwise(around))  # "живу за городом"
        far = t.negated or out_of_town or any(o.has(MOVED_FAR) or (o.word is not None and o.word.place) for o in around)
        if t.has("жить") and far and not r.has("дача"):
            return True
        if t.has({"уехать", "уезжать"}) and not t.negated:
            after = r.tokens[i + 1 : i + 6]
            away = after[:1] and after[0].text == "из" and not r.has({"вернуться", "неделя", "месяц"})
            elsewhere = any(o.has("другой") for o in after) and any(
                _is_place(r, j) for j in range(i + 1, min(i + 6, len(r.tokens)))
            )
            to_town = any(_is_place(r, j) for j in range(i + 1, min(i + 4, len(r.tokens)))) and not r.has(TRIP)
            if r.has(FOR_GOOD) or away or elsewhere or to_town:
                return True  # "уехала насовсем", "уехала из города", "уехала в Казань" (not "на неделю")
    return False


def _elsewhere(r: Reply) -> bool:
    """Another salon or master: "хожу в другой салон", "у меня свой мастер", "стригусь у подруги"."""
    friends_master = r.has(PLACES) and r.has(FRIENDS)  # a relative who is a master is self-service
    for i, t in enumerate(r.tokens):
        nxt = r.tokens[i + 1] if i + 1 < len(r.tokens) else None
        prev = r.tokens[i - 1] if i else None
        if t.has(ANOTHER) and nxt is not None and nxt.has(PLACES | {"девочка", "девушка"}):
            return True  # "в другой салон", "к другой девочке"
        if t.has({"перейти", "переходить"}) and not t.negated and "к" in [o.text for o in r.around(i, 3)]:
            return True  # "я к Кате перешла"
        near_after = any(o.has({"рядом", "возле", "около", "близкий"}) for o in r.tokens[i + 1 : i + 3])
        by_work = [o.text for o in r.tokens[i + 1 : i + 2]] == ["у"] and r.tokens[i + 2 : i + 3] != []
        if t.has(PLACES) and (near_after or (by_work and r.tokens[i + 2].has({"работа", "дом"}))):
            return True  # "в барбершоп возле метро хожу", "в студии возле работы", "в салон у работы"
        if t.has(PLACES) and (r.has({"дом", "уйти", "подешевле"}) or r.has("найти")):
            return True  # "салон рядом с домом", "мастер ушла от вас", "нашла мастера подешевле"
        if t.has(PLACES) and any(o.has("работать") and o.word is not None and o.word.past for o in r.tokens):
            return True  # "хожу к мастеру, которая раньше у вас работала"
        if t.has("ходить") and not t.negated and nxt is not None and nxt.text == "к":
            return True  # "хожу к Лене", "хожу к своей"
        if t.has(PLACES) and prev is not None and prev.text == "к" and r.has("ходить"):
            return True  # "к частнику хожу"
        if t.has("открыть") and r.has("свой"):
            return True  # "она теперь своё открыла"
        if t.has("найти") and t.word is not None and t.word.past and r.has("уже"):
            return True  # "я уже нашла, спасибо"
        if t.has(MOVED) and any(o.has(PLACES) for o in r.tokens[max(0, i - 3) : i]):
            return True  # "мой мастер переехала в другой салон, я за ней"
        if t.has(FRIENDS) and ((prev is not None and prev.text in {"у", "к"}) or r.has(SERVICE_VERBS)):
            return True  # "стригусь у подруги", "мне подружка делает ногти"
        near = any(o.has({"рядом", "возле", "около", "близкий"}) for o in r.tokens[i + 1 : i + 5])
        if (t.has(SERVICE_VERBS) or t.has(HABITUAL)) and near:
            return True  # "стригусь теперь рядом с работой", "хожу ближе"
        if t.has("обслуживаться") or (t.text == "на" and nxt is not None and nxt.text in {"дом", "дому"}):
            return True
    return friends_master


def _done_with_us(r: Reply, k: int) -> bool:
    """ "у вас" at k beside a service done ("она у вас стриглась")."""
    if r.tokens[k].text not in {"у", "к"} or r.tokens[k + 1].text not in {"вас", "вам"}:
        return False
    return any(o.has(SERVICE_VERBS) and o.word is not None and o.word.past for o in r.tokens[max(0, k - 2) : k + 4])


def _self_service(r: Reply) -> bool:
    """Done at home: "сама крашусь", "муж стрижёт машинкой", "научилась сама", "мама подстригла"."""
    service = r.has(SERVICE_VERBS)
    if any(_done_with_us(r, k) for k in range(len(r.tokens) - 1)):
        return False  # "передам дочке, она у вас стриглась": with us, not at home
    tools = r.has({"машинка", "триммер", "лампа", "аппарат", "бритва"})
    if tools or (service and (r.has(SELF) or r.has(RELATIVES) or r.has("научиться"))):
        return True
    if r.has(RELATIVES) and r.has(PLACES) and not r.has(ANOTHER):
        return True  # "у меня свекровь парикмахер", "дочка у меня мастер маникюра"
    if r.has(SELF) and not r.has(BOOK | WRITE_BACK) and (r.has(PLACES) or r.has("всё")):
        return True  # "я сама себе парикмахер", "я сама мастер маникюра", "теперь всё сама"
    return service and any(t.text == "дома" for t in r.tokens)


def _already_done(r: Reply) -> bool:
    """Done already, somewhere: "уже покрасилась", "мне уже сделали" (not "уже записалась")."""
    if r.has(BOOK - SERVICE_VERBS) or r.has("запись"):
        return False
    done = any(t.has(SERVICE_VERBS) and t.word is not None and t.word.past and not t.negated for t in r.tokens)
    return done and (r.has("уже") or r.has(PLACES))


def _no_time_for_it(r: Reply) -> bool:
    """ "Не до этого", "не до салонов": no time or strength for it now (money said aside: "ипотека, не до салонов")."""
    texts = [t.text for t in r.tokens]
    return any(a == "не" and b == "до" for a, b in pairwise(texts)) and not _price(r)


def _gave_up(r: Reply) -> bool:
    """A habit given up or hair grown out: "больше не крашусь", "я волосы отращиваю" (not for a passing reason or
    for now: "беременна, пока не крашусь", "ногу сломала, пока никуда не хожу" are later)."""
    passing = r.has(PASSING) or r.has({"пока", "сейчас", "позже", "потом"})  # for now, not for good
    return any(
        (
            (t.negated and (t.has(HABITUAL) or t.has(SERVICE_VERBS)) and t.word is not None and not t.word.future)
            and not passing
        )
        or t.has(GROWING)
        for t in r.tokens
    )


def _named_later(r: Reply) -> bool:
    """A time named for later: "может в январе", "после праздников", "в этом месяце никак"."""
    return r.when is not None


def _price(r: Reply) -> bool:
    """Money: "дорого", "денег нет", "не по карману", "не потяну", "финансы не позволяют"."""
    negation = any(t.negated for t in r.tokens)
    # Negated or not: "не по карману", "не потяну" say it as plainly as "дорого".
    money = any(t.has(PRICE_CUES) for t in r.tokens) or _haggles(r)
    return money or (negation and any(t.has({"позволить", "позволять"}) for t in r.tokens))


def _haggles(r: Reply) -> bool:
    """A discount haggled over: "10% мало", "только если скидка 30%", "скидка 10% на ваши цены, смешно"."""
    discount = any(t.has({"скидка", "акция"}) or t.special == "percent" for t in r.tokens)
    return discount and r.has(HAGGLE)


def _not_now(r: Reply) -> bool:
    """Later: "не сейчас", "пока нет", "я в отпуске", "не смогу", "в субботу никак", "сама запишусь"."""
    day = any(t.has(WEEKDAYS) or t.has(DAY_WORDS) for t in r.tokens)  # "среда не вариант", "завтра занята"
    # "не с кем оставить ребёнка"; "не знаю, скорее нет" (undecided, leaning to no: for now, as the guide has it)
    nobody = any(t.text == "кем" and t.negated for t in r.tokens)
    leaning = r.has("скорее") and any(t.negated and t.has("знать") for t in r.tokens)
    cues = any(t.has(LATER_CUES) or (t.negated and t.has(CANNOT)) for t in r.tokens)
    return day or r.deferred or nobody or leaning or cues


NEGATIVE_REASONS: tuple[tuple[ReplyReason, Callable[[Reply], bool]], ...] = (
    (ReplyReason.UNHAPPY, _unhappy),
    (ReplyReason.NOT_NOW, _no_time_for_it),
    (ReplyReason.MOVED_AWAY, _moved),
    (ReplyReason.WENT_ELSEWHERE, _elsewhere),
    (ReplyReason.SELF_SERVICE, _self_service),
    (ReplyReason.WENT_ELSEWHERE, _already_done),
    (ReplyReason.NO_NEED, _gave_up),
    (ReplyReason.NOT_NOW, _named_later),
    (ReplyReason.PRICE, _price),
    (ReplyReason.NOT_NOW, _not_now),
)
# The reasons that make a refusal of words that looked neutral ("хожу к знакомой мастерице на дом").
_TELLING = frozenset(
    {ReplyReason.UNHAPPY, ReplyReason.MOVED_AWAY, ReplyReason.WENT_ELSEWHERE, ReplyReason.SELF_SERVICE}
)


def negative_reason(r: Reply) -> ReplyReason:
    """The first negative reason whose rule holds; no_need when none does."""
    return next((reason for reason, holds in NEGATIVE_REASONS if holds(r)), ReplyReason.NO_NEED)


# --- Neutral readings -------------------------------------------------------------------------------------------


def _asks(clause: Clause, *, loose: bool = False) -> bool:
    """Whether a clause asks the salon something: it opens with a question word, or has a question mark and a
    question word, "ли", or a price, place or hours; `loose`: any question mark."""
    tokens = clause.tokens
    if not tokens or any(t.has("подумать") for t in tokens):
        return False  # "можно я подумаю?" asks leave to think, nothing of the salon
    first = tokens[1] if tokens[0].text == "а" and len(tokens) > 1 else tokens[0]
    if not clause.question:
        # Without a question mark (voice) a question word early on asks; "как", "что", "когда" also join clauses.
        words = QUESTION_WORDS - {"как", "что", "когда", "почему", "ли", "напомните"}
        return any(
            t.has(words) and "не" not in [o.text for o in tokens[max(0, i - 2) : i]] and not _rhetorical(tokens, i)
            for i, t in enumerate(tokens[:3])
        )
    if first.has(QUESTION_WORDS) and not _indefinite(tokens, tokens.index(first)):
        return True
    about = any(t.has(PRICE) or t.has(ADDRESS) or t.has(HOURS) or t.has(INFO_WORDS) for t in tokens)
    # "Алло?", "Серьёзно?", "Что?" ask nothing of the salon; "А вы кто?" does.
    return (loose and len(tokens) > 1) or about or any(t.text == "ли" or t.has(QUESTION_WORDS) for t in tokens[1:])


def _indefinite(tokens: list[Token], i: int) -> bool:
    """ "где-то", "когда-нибудь", "кто-либо": a question word made indefinite asks nothing."""
    return i + 1 < len(tokens) and tokens[i + 1].text in {"то", "нибудь", "либо"}


def _rhetorical(tokens: list[Token], i: int) -> bool:
    """Without a question mark, "какой маникюр", "какие ногти" after a hardship exclaim rather than ask; so does an
    indefinite "где-то"."""
    if _indefinite(tokens, i):
        return True
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    return tokens[i].has("какой") and nxt is not None and nxt.has(SERVICE_WORDS) and len(tokens) <= 3


def _ends_with_question(j: Judgement) -> bool:
    """The last clause that decides or asks is a question to the salon."""
    for clause, verdict in zip(reversed(j.clauses), reversed(j.verdicts), strict=True):
        if _asks(clause):
            return True
        if verdict.kind in {"refuse", "book", "concrete", "agree"}:
            return False
    return False


def _asks_anything(j: Judgement) -> bool:
    """Any clause asks something."""
    return any(_asks(c, loose=True) for c in j.clauses)


def _speaks_of_the_salon(j: Judgement) -> bool:
    """A clause speaks of prices, the address or the hours ("прайс пришлите")."""
    return any(v.kind == "info" for v in j.verdicts)


def _only_agrees(j: Judgement) -> bool:
    """A positive reply that only agrees ("мне так удобнее"): it asks to book nothing."""
    return not any(v.kind in {"book", "concrete"} for v in j.verdicts)


def _busy(j: Judgement) -> bool:
    """Busy by the rules' words ("за рулём", "отвечу позже"), or by the reply as a whole: "работаю, потом", "я
    занята, позже" (a busy moment and a later, nothing refused), "щас не могу" (only now is refused)."""
    if named_time(j.clauses) is not None:
        return False  # "в ноябре напишите, сейчас занята": a time for the visit
    if any(s.busy for s in j.signals):
        return True
    tokens = [t for c in j.clauses for t in c.tokens]
    if any(t.negated and t.has(MSG_VERBS) for t in tokens) and any(t.has(BUSY_CONTEXT) for t in tokens):
        return True  # "не пиши мне в рабочее время, я на работе"
    # Anything that puts off the visit rather than the answer: a time, a day, "как-нибудь", "подумаю", a hardship.
    # "Вечером" and "потом" beside an answer are the answer's time ("сейчас не могу, вечером напишу").
    if any((t.has(_PUT_OFF) and t.text not in _ANSWER_LATER) or t.has(HARDSHIP) for t in tokens):
        return False
    negated = [t for t in tokens if t.negated]
    # "щас не могу, позже", "сейчас не могу, вечером напишу": only now is refused ("не смогу", "не получится" refuse
    # the visit; "может позже" puts it off).
    only_now = bool(negated) and all(t.text in _CANNOT_NOW for t in negated) and any(t.has("сейчас") for t in tokens)
    later = any(t.has(LATER_CUES - {"сейчас"}) and t.text not in _ANSWER_LATER for t in tokens)
    if only_now and "может" not in {t.text for t in tokens} and not later:
        return True
    if any(s.remind for s in j.signals):
        return False
    answer_later = any(t.text in _ANSWER_LATER - {"вечером"} for t in tokens)
    if not negated and answer_later and any(_call_me(t) for t in tokens):
        return True  # "перезвоните позже" ("перезвоните вечером" names a time for the call)
    if all(v.kind == "none" for v in j.verdicts) and any(t.has(BUSY_CONTEXT) for t in tokens):
        return True  # "я на работе", "я у врача": where the client is, nothing more
    return not negated and any(t.text in _ANSWER_LATER for t in tokens) and any(t.has(BUSY_CONTEXT) for t in tokens)


def _call_me(t: Token) -> bool:
    """A call-back asked for: "перезвоните", "наберите"."""
    return t.word is not None and t.word.imperative and t.has(CALLBACK) and not t.negated


def _refuses_visit(r: Reply) -> bool:
    """The visit itself is refused ("не получится", "не смогу", "никак"): a busy moment beside it only says why."""
    texts = [t.text for t in r.tokens]
    not_up_to = any(a == "не" and b == "до" for a, b in pairwise(texts)) and not r.has("переписка")  # "не до салонов"
    return not_up_to or any(
        t.text == "никак" or (t.negated and t.has({"получиться", "смочь", "выйти"})) for t in r.tokens
    )


# Words as typed that put off an answer ("работаю, потом"); what puts off the visit instead.
_ANSWER_LATER = frozenset({"потом", "позже", "попозже", "позднее", "вечером"})
# Cannot at this moment (present tense): "не могу" is busy now, "не смогу" refuses the visit.
_CANNOT_NOW = frozenset({"могу", "можем"})
_PUT_OFF = WEEKDAYS | DAY_WORDS | {"нибудь", "подумать", "месяц", "неделя", "конец", "год"}


def _hard_no(r: Reply) -> bool:
    """A plain no ("нет", "не хочу", "не надо") that busy words do not soften."""
    return any(t.has(HARD_NO) and not t.negated for t in r.tokens) or any(
        t.negated and t.has(NOT_WANTED) for t in r.tokens
    )


# --- The reason ------------------------------------------------------------------------------------------------


def explain(j: Judgement) -> Classification:
    """The classification of a judged reply: its label, settled as above, and its reason."""
    if j.label is ReplyLabel.POSITIVE and _only_agrees(j):
        # "я дома крашусь, мне так удобнее": an agreeable word next to a reason to stay away.
        reason = negative_reason(Reply.of(j))
        if reason in _TELLING:
            return Classification(ReplyLabel.NEGATIVE, reason)
    if j.label in (ReplyLabel.POSITIVE, ReplyLabel.OPT_OUT):
        return Classification(j.label)
    return reason_for(j, j.label)


def reason_within(j: Judgement, label: ReplyLabel) -> Classification:
    """The reason of a label someone else gave (a model's): read within that label, never changing it."""
    if label in (ReplyLabel.POSITIVE, ReplyLabel.OPT_OUT):
        return Classification(label)
    r = Reply.of(j)
    if label is ReplyLabel.NEGATIVE:
        reason = negative_reason(r)
        return Classification(label, reason, r.when if reason is ReplyReason.NOT_NOW else None)
    if _asks_anything(j) or _speaks_of_the_salon(j):
        return Classification(label, ReplyReason.QUESTION)
    return Classification(label, ReplyReason.BUSY if _busy(j) else ReplyReason.OTHER)


def reason_for(j: Judgement, label: ReplyLabel) -> Classification:
    """The classification of a reply for a label given (the rules' or a model's)."""
    if label in (ReplyLabel.POSITIVE, ReplyLabel.OPT_OUT):
        return Classification(label)
    r = Reply.of(j)
    reason = negative_reason(r)
    if label is ReplyLabel.NEUTRAL:
        if _asks_anything(j):
            return Classification(label, ReplyReason.QUESTION)
        if reason in _TELLING:
            return Classification(ReplyLabel.NEGATIVE, reason)
        if _busy(j):
            return Classification(label, ReplyReason.BUSY)
        return Classification(label, ReplyReason.QUESTION if _speaks_of_the_salon(j) else ReplyReason.OTHER)
    if j.sarcastic:
        # "ну конечно, прям сейчас всё брошу": no time is meant, only what it mocks.
        return Classification(label, ReplyReason.NO_NEED if reason is ReplyReason.NOT_NOW else reason)
    if _ends_with_question(j):
        return Classification(ReplyLabel.NEUTRAL, ReplyReason.QUESTION)
    if (
        _busy(j)
        and reason not in _TELLING
        and reason is not ReplyReason.PRICE
        and not (_hard_no(r) or _refuses_visit(r))
    ):
        return Classification(ReplyLabel.NEUTRAL, ReplyReason.BUSY)
    return Classification(label, reason, r.when if reason is ReplyReason.NOT_NOW else None)
