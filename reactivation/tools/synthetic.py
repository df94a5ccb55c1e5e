"""A synthetic salon: services, clients with per-service rhythms, a year of visits, bookings. Pure and deterministic.

What the tests, the demo and the benchmarks run on. The generator only yields plain rows; `bulk.load_salon`
writes them. Each client follows one archetype: regulars who keep their own rhythm, irregulars, lapsed
clients who stopped coming, new clients with one visit, no-shows, a few blacklisted, some with a future booking.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from reactivation.storage.bookings import CANCELLED

# Who a service is for: the client it fits. A child's service is booked by a parent, under the parent's name and
# phone (the booking system's client is the adult who brings the child).
ANYONE = "anyone"
MEN = "men"
WOMEN = "women"
PARENTS = "parents"
FATHERS = "fathers"

# (title as the booking system writes it, true rhythm in days, price in roubles, who it is for)
CATALOG: list[tuple[str, int, int, str]] = [
    ("Стрижка мужская", 28, 1500, MEN),
    ("Мужская стрижка машинкой", 21, 900, MEN),
    ("Стрижка бороды", 21, 800, MEN),
    ("Стрижка женская", 42, 2500, WOMEN),
    ("Детская стрижка", 35, 1000, PARENTS),
    ("Окрашивание волос", 50, 5000, WOMEN),
    ("Окрашивание корней", 35, 3500, WOMEN),
    ("Балаяж", 90, 9000, WOMEN),
    ("Мелирование", 60, 6000, WOMEN),
    ("Маникюр с покрытием гель-лак", 21, 2200, WOMEN),
    ("Маникюр классический", 14, 1200, ANYONE),
    ("Педикюр", 30, 2500, ANYONE),
    ("Наращивание ресниц", 21, 2800, WOMEN),
    ("Ламинирование ресниц", 42, 2500, WOMEN),
    ("Коррекция бровей", 21, 800, WOMEN),
    ("Чистка лица", 28, 3500, ANYONE),
    ("Массаж лица", 14, 2000, ANYONE),
    ("Эпиляция ног", 35, 2000, WOMEN),
    ("Шугаринг бикини", 28, 2000, WOMEN),
    ("Лазерная эпиляция подмышек", 42, 2500, WOMEN),
    ("Кератиновое выпрямление", 120, 8000, WOMEN),
    ("Укладка", 7, 1500, WOMEN),
    ("Ботокс для волос", 45, 4500, WOMEN),
    ("Пилинг", 21, 2500, ANYONE),
    ("Королевское бритьё", 14, 1800, MEN),
    ("Наращивание ногтей", 21, 3000, WOMEN),
    # No industry keyword matches these: they fall through to the salon's average or the universal 30 days.
    ("SPA-программа «Релакс»", 30, 4000, ANYONE),
    ("Камуфляж седины", 30, 1200, MEN),
    ("Комплекс «Отец и сын»", 30, 2200, FATHERS),
]
# Share of clients who bring a child (and may book the child's services).
PARENT_SHARE = 0.2
# Share of women among a salon's clients, and among a barbershop's (which offers no women's services).
FEMALE_SHARE = 0.6
BARBERSHOP_FEMALE_SHARE = 0.1

FIRST_NAMES_F = [
    "Мария",
    "Анна",
    "Елена",
    "Ольга",
    "Наталья",
    "Татьяна",
    "Ирина",
    "Светлана",
    "Юлия",
    "Екатерина",
    "Алёна",
    "Дарья",
    "Ксения",
    "Виктория",
    "Полина",
    "Софья",
    "Любовь",
    "Надежда",
]
FIRST_NAMES_M = [
    "Александр",
    "Дмитрий",
    "Максим",
    "Сергей",
    "Андрей",
    "Алексей",
    "Иван",
    "Артём",
    "Михаил",
    "Никита",
    "Егор",
    "Павел",
    "Роман",
    "Илья",
    "Фёдор",
    "Кирилл",
]
SURNAMES = [
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
]
PATRONYMICS_M = ["Александрович", "Сергеевич", "Иванович", "Петрович", "Андреевич"]
PATRONYMICS_F = ["Александровна", "Сергеевна", "Ивановна", "Петровна", "Андреевна"]
SALON_NAMES = [
    "Салон «Бархат»",
    "Студия «Шарм»",
    "Салон «Лаванда»",
    "Точка красоты",
    "Барбершоп «Борода»",
    "Салон «Локон»",
    "Студия «Мята»",
]

# Archetype shares (must sum to 1).
ARCHETYPES: list[tuple[str, float]] = [
    ("regular", 0.42),
    ("irregular", 0.15),
    ("lapsed", 0.22),
    ("new", 0.10),
    ("no_show", 0.05),
    ("vip", 0.06),
]


@dataclass(frozen=True)
class SyntheticService:
    yclients_id: int
    title: str
    rhythm_days: int
    price: int
    audience: str = ANYONE

    def fits(self, *, female: bool, parent: bool) -> bool:
        """Whether a client of this gender (bringing a child or not) would book this service."""
        if self.audience == MEN:
            return not female
        if self.audience == WOMEN:
            return female
        if self.audience == PARENTS:
            return parent
        if self.audience == FATHERS:
            return parent and not female
        return True


@dataclass
class SyntheticClient:
    id: int
    name: str | None
    phone: str | None
    archetype: str
    female: bool = False
    parent: bool = False  # brings a child, so books children's services too
    last_visit_date: date | None = None
    visit_count: int = 0
    last_services: list[dict[str, object]] = field(default_factory=list)
    total_spent: Decimal = Decimal(0)
    blacklisted: bool = False
    favorite_staff_ids: list[int] = field(default_factory=list)
    preferred_time_slots: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SalonShape:
    """How a salon's clients behave when not as the default mix: the benchmarks' salons of other shapes.

    `last_visit_days` (low, high): every client who keeps a rhythm made their last visit of each favourite service
    between that many days ago, drawn uniformly, their earlier visits one rhythm apart before it; or
    `last_visit_rhythms` (low, high): as many of their own rhythms ago. `spent_step` rounds total_spent down to a
    multiple of it (values with many ties).
    """

    archetypes: tuple[tuple[str, float], ...] = tuple(ARCHETYPES)
    last_visit_days: tuple[float, float] | None = None
    last_visit_rhythms: tuple[float, float] | None = None
    booking_share: float = 0.12
    spent_step: int = 1


DEFAULT_SHAPE = SalonShape()


class SyntheticAppointment(NamedTuple):
    client_id: int
    service_ids: list[int]
    appointment_datetime: datetime
    attendance: int


class SyntheticBooking(NamedTuple):
    id: int
    client_id: int | None
    client_phone: str | None
    datetime: dt.datetime
    status: str
    created_at: dt.datetime


@dataclass
class SalonPlan:
    """Everything `load_salon` writes for one company."""

    company_id: int
    name: str
    timezone: str
    settings: dict[str, object]
    services: list[SyntheticService]
    clients: list[SyntheticClient]
    appointments: list[SyntheticAppointment]
    bookings: list[SyntheticBooking]


def generate_salon(
    *,
    company_id: int,
    clients: int,
    seed: int = 1,
    today: date,
    history_days: int = 365,
    timezone: str = "Europe/Moscow",
    name: str | None = None,
    settings: dict[str, object] | None = None,
    shape: SalonShape = DEFAULT_SHAPE,
) -> SalonPlan:
    """Build a deterministic salon for `company_id`: the same arguments always give the same rows."""
    if clients < 0:
        raise ValueError("clients must be zero or more")
    rng = random.Random(f"{seed}:{company_id}")
    salon_name = name or rng.choice(SALON_NAMES)
    barbershop = "барбершоп" in salon_name.lower()
    offered = [entry for entry in CATALOG if not (barbershop and entry[3] == WOMEN)]
    catalog = rng.sample(offered, k=rng.randint(min(18, len(offered)), min(28, len(offered))))
    service_base = 10_000 + (company_id % 1000) * 100
    services = [
        SyntheticService(service_base + i, title, rhythm, price, audience)
        for i, (title, rhythm, price, audience) in enumerate(catalog)
    ]
    plan = SalonPlan(
        company_id=company_id,
        name=salon_name,
        timezone=timezone,
        settings=dict(settings or {}),
        services=services,
        clients=[],
        appointments=[],
        bookings=[],
    )
    booking_ids = iter(range(company_id * 10_000_000 + 1, company_id * 10_000_000 + 9_999_999))
    for index in range(clients):
        client, visits, bookings = _client(
            rng,
            company_id,
            index,
            services,
            today,
            history_days,
            booking_ids,
            female_share=BARBERSHOP_FEMALE_SHARE if barbershop else FEMALE_SHARE,
            shape=shape,
        )
        plan.clients.append(client)
        plan.appointments.extend(visits)
        plan.bookings.extend(bookings)
    return plan


def _client(
    rng: random.Random,
    company_id: int,
    index: int,
    services: list[SyntheticService],
    today: date,
    history_days: int,
    booking_ids: Iterator[int],
    *,
    female_share: float,
    shape: SalonShape,
) -> tuple[SyntheticClient, list[SyntheticAppointment], list[SyntheticBooking]]:
    client_id = company_id * 10_000_000 + index + 1
    archetype = _pick(rng, shape.archetypes)
    phone = _phone(rng, index)
    female = rng.random() < female_share
    client = SyntheticClient(
        id=client_id,
        name=_name(rng, phone, female=female),
        phone=phone,
        archetype=archetype,
        female=female,
        parent=rng.random() < PARENT_SHARE,
    )
    client.blacklisted = rng.random() < 0.02
    client.favorite_staff_ids = sorted(rng.sample(range(1, 13), k=rng.randint(0, 2)))
    client.preferred_time_slots = rng.sample(["morning", "afternoon", "evening"], k=rng.randint(0, 2))

    # Only the services this client would book: no королевское бритьё for a woman, no children's haircut for a
    # client without a child.
    fitting = [s for s in services if s.fits(female=client.female, parent=client.parent)] or services
    favourites = rng.sample(fitting, k=1 if rng.random() < 0.75 or len(fitting) < 2 else 2)
    # Each client keeps their own pace around the service's rhythm.
    pace = rng.uniform(0.8, 1.25)
    start = today - timedelta(days=history_days)
    visits: list[SyntheticAppointment] = []

    if archetype == "new":
        day = today - timedelta(days=rng.randint(1, min(120, history_days)))
        visits.append(_visit(rng, client_id, favourites[:1], day, attended=True))
    elif archetype == "no_show":
        for _ in range(rng.randint(1, 3)):
            day = today - timedelta(days=rng.randint(1, history_days))
            visits.append(_visit(rng, client_id, favourites[:1], day, attended=False))
        if rng.random() < 0.5:
            day = today - timedelta(days=rng.randint(20, history_days))
            visits.append(_visit(rng, client_id, favourites[:1], day, attended=True))
    else:
        # Lapsed clients stop some time ago; everyone else comes up to roughly now.
        if archetype == "lapsed":
            stop = today - timedelta(days=rng.randint(40, min(400, history_days + 35)))
        else:
            stop = today - timedelta(days=rng.randint(0, 20))
        for service in favourites:
            rhythm = service.rhythm_days * pace
            spread = 0.08 if archetype in ("regular", "vip") else 0.45
            if archetype != "lapsed" and (shape.last_visit_days or shape.last_visit_rhythms):
                visits.extend(_visits_back(rng, client_id, service, fitting, rhythm, spread, today, start, shape))
                continue
            day = start + timedelta(days=rng.uniform(0, rhythm))
            while day <= stop:
                combo = [service, rng.choice(fitting)] if rng.random() < 0.08 else [service]
                visits.append(_visit(rng, client_id, combo, day, attended=rng.random() > 0.03))
                gap = max(1.0, rng.gauss(rhythm, rhythm * spread))
                day += timedelta(days=gap)
        if not any(v.attendance == 1 for v in visits):
            day = stop - timedelta(days=rng.randint(0, 30))
            visits.append(_visit(rng, client_id, favourites[:1], max(day, start), attended=True))

    visits.sort(key=lambda v: v.appointment_datetime)
    attended = [v for v in visits if v.attendance == 1]
    if attended:
        _sum_up(rng, client, attended, services, shape)
    bookings: list[SyntheticBooking] = []
    if archetype != "lapsed" and attended and rng.random() < shape.booking_share:
        bookings.append(_upcoming_booking(rng, client, today, booking_ids))
    return client, visits, bookings


def _sum_up(
    rng: random.Random,
    client: SyntheticClient,
    attended: list[SyntheticAppointment],
    services: list[SyntheticService],
    shape: SalonShape,
) -> None:
    """The client's card as the booking system keeps it: last visit, visit count, last services, money spent."""
    prices = {s.yclients_id: s.price for s in services}
    titles = {s.yclients_id: s.title for s in services}
    regular = client.archetype in ("regular", "vip")
    client.last_visit_date = attended[-1].appointment_datetime.date()
    # Older history beyond the year the cache holds.
    client.visit_count = len(attended) + (rng.randint(0, 20) if regular else 0)
    seen: list[int] = []
    for visit in reversed(attended):
        for sid in visit.service_ids:
            if sid not in seen:
                seen.append(sid)
    client.last_services = [{"id": sid, "title": titles[sid]} for sid in seen[:3]]
    spent = sum(prices[sid] for v in attended for sid in v.service_ids)
    spent *= 3 if client.archetype == "vip" else 1
    client.total_spent = Decimal(spent - spent % shape.spent_step)


def _upcoming_booking(
    rng: random.Random, client: SyntheticClient, today: date, booking_ids: Iterator[int]
) -> SyntheticBooking:
    when = _at_hour(rng, today + timedelta(days=rng.randint(1, 21)))
    status = CANCELLED if rng.random() < 0.25 else rng.choice(["confirmed", "new"])
    created = _at_hour(rng, today - timedelta(days=rng.randint(0, 10)))
    return SyntheticBooking(next(booking_ids), client.id, client.phone, when, status, created)


def _visits_back(
    rng: random.Random,
    client_id: int,
    service: SyntheticService,
    fitting: list[SyntheticService],
    rhythm: float,
    spread: float,
    today: date,
    start: date,
    shape: SalonShape,
) -> list[SyntheticAppointment]:
    """A service's visits laid out backwards from a last visit placed as the shape says, one rhythm apart."""
    if shape.last_visit_days is not None:
        ago = rng.uniform(*shape.last_visit_days)
    else:
        low, high = shape.last_visit_rhythms or (0.0, 1.0)
        ago = rng.uniform(low, high) * rhythm
    day = today - timedelta(days=ago)
    visits: list[SyntheticAppointment] = []
    while day >= start:
        combo = [service, rng.choice(fitting)] if rng.random() < 0.08 else [service]
        # The last visit is attended: the shape places it.
        visits.append(_visit(rng, client_id, combo, day, attended=not visits or rng.random() > 0.03))
        day -= timedelta(days=max(1.0, rng.gauss(rhythm, rhythm * spread)))
    return visits


def _visit(
    rng: random.Random, client_id: int, services: list[SyntheticService], day: date | datetime, *, attended: bool
) -> SyntheticAppointment:
    if isinstance(day, datetime):
        day = day.date()
    return SyntheticAppointment(client_id, [s.yclients_id for s in services], _at_hour(rng, day), int(attended))


def _at_hour(rng: random.Random, day: date) -> datetime:
    # Salon hours in UTC for a Moscow salon: 10:00-20:00 local, on the quarter hour.
    quarter = int(rng.random() * 44)
    return datetime(day.year, day.month, day.day, 7 + quarter // 4, 15 * (quarter % 4), tzinfo=UTC)


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    roll = rng.random()
    for value, share in weighted:
        roll -= share
        if roll < 0:
            return value
    return weighted[-1][0]


def _phone(rng: random.Random, index: int) -> str | None:
    # Unique per client within a salon; written the many ways the booking system receives them.
    subscriber = 9_000_000_000 + (index * 7_919 + 1_234_567) % 999_999_999
    digits = str(subscriber)
    roll = rng.random()
    if roll < 0.005:
        return None
    if roll < 0.012:
        return rng.choice(["12345", "8 (000) 000-00-00", "не указан", "+7 900 123"])
    style = rng.randrange(5)
    if style == 0:
        return f"+7{digits}"
    if style == 1:
        return f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"
    if style == 2:
        return f"7{digits}"
    if style == 3:
        return f"+7 {digits[:3]} {digits[3:]}"
    return f"8-{digits[:3]}-{digits[3:6]}-{digits[6:8]}-{digits[8:]}"


def _name(rng: random.Random, phone: str | None, *, female: bool) -> str | None:
    first = rng.choice(FIRST_NAMES_F if female else FIRST_NAMES_M)
    surname = rng.choice(SURNAMES) + ("а" if female else "")
    patronymic = rng.choice(PATRONYMICS_F if female else PATRONYMICS_M)
    roll = rng.random()
    if roll < 0.40:
        return first
    if roll < 0.60:
        return f"{surname} {first} {patronymic}"
    if roll < 0.72:
        return f"{first} {surname}"
    if roll < 0.78:
        return first.upper()
    if roll < 0.83:
        return first.lower()
    if roll < 0.88:
        return f"{first} {surname[0]}."
    if roll < 0.93:
        digits = "".join(ch for ch in (phone or "") if ch.isdigit())
        return f"Клиент {digits}" if digits else "Клиент"
    if roll < 0.97:
        return None
    return ""
