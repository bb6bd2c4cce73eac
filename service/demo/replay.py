"""How the demo's data was made: `python -m service.demo.replay` writes groups.csv and
replay.csv beside this file from the public figures below (see SOURCES.md).

The figures are fixed points; everything between them is interpolated here, in the
open, with a fixed random seed, so the same script always writes the same files (a
test checks that the shipped files are exactly what it writes).

All times are UTC; the CSV writes them in local time (UTC+4), as a coordinator in
Stepanakert would have.
"""

from __future__ import annotations

import csv
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from service.models import SADD_KEYS, VULNERABLE_KEYS

HERE = Path(__file__).resolve().parent
GROUPS_CSV = HERE / "groups.csv"
REPLAY_CSV = HERE / "replay.csv"

# uuid5 namespace of the demo: group ids and client_ids are derived from it, so the
# same replay always has the same ids (and loading it twice stores nothing new).
NAMESPACE = uuid.UUID("6f0f6a43-5b6e-4a55-9d0b-2023092000e1")
LOCAL = timezone(timedelta(hours=4), "AMT")
CENTRE = "stepanakert-centre"
AIRPORT = "stepanakert-airport"
SEED = 20230920


def utc(day: int, hour: int, minute: int = 0, month: int = 9) -> datetime:
    return datetime(2023, month, day, hour, minute, tzinfo=UTC)


# --- the public figures (SOURCES.md) ---------------------------------------------------

# People at the peacekeepers' base at the airport: about 5,000 on 21 September, 715 by
# the 24th. The ramp before the peak and the two days after it are interpolated.
AIRPORT_TOTALS = {
    utc(20, 4): 800,
    utc(20, 10): 1600,
    utc(20, 16): 2400,
    utc(20, 22): 3200,
    utc(21, 4): 3900,
    utc(21, 10): 4600,
    utc(21, 16): 5000,  # 21 Sep, 20:00 local: "about 5,000" (source)
    utc(22, 8): 4200,  # interpolated
    utc(23, 8): 2300,  # interpolated
    utc(24, 8): 715,  # 24 Sep, 12:00 local: 715 (source)
}

# Cumulative arrivals in Armenia (the Armenian government's counts). In the demo a
# group's departure is placed at the moment its people were counted arriving: the
# hours on the road are not modelled.
ARRIVALS = [
    (utc(24, 18), 1050),  # 24 Sep, 22:00 local
    (utc(26, 16), 28120),  # 26 Sep, 20:00 local
    (utc(29, 2), 84770),  # 29 Sep, 06:00 local
    (utc(30, 6), 100417),  # 30 Sep (reported that day; 10:00 local is ours)
    (utc(3, 6, month=10), 100617),  # 3 Oct (reported that day; 10:00 local is ours)
]
FIRST_DEPARTURE = utc(24, 10)

# The airport's groups at the peak; the first two (715 people) stay at the base until
# they leave with the convoys, the others are moved to the city before that.
AIRPORT_GROUPS = [
    ("Airport base, hangar 1", "Martuni", 400),
    ("Airport base, hangar 2", "Chartar", 315),
    ("Airport base, tents by the runway", "Sarushen", 620),
    ("Airport base, hangar 3", "Karmir Shuka", 580),
    ("Airport base, terminal hall", "Martakert", 700),
    ("Airport base, tents north", "Haterk", 540),
    ("Airport base, hangar 4", "Askeran", 660),
    ("Airport base, hangar 5", "Khnapat", 450),
    ("Airport base, tents south", "Nakhijevanik", 385),
    ("Airport base, canteen", "Ivanyan", 350),
]
# Moves from the base to the city (interpolated, to match AIRPORT_TOTALS).
AIRPORT_MOVES = {
    "Airport base, canteen": utc(21, 23),
    "Airport base, hangar 5": utc(22, 5),
    "Airport base, tents by the runway": utc(22, 13),
    "Airport base, hangar 3": utc(22, 19),
    "Airport base, terminal hall": utc(23, 3),
    "Airport base, tents north": utc(23, 12),
    "Airport base, hangar 4": utc(23, 18),
    "Airport base, tents south": utc(24, 1),
}
# Which arrival interval each airport group leaves in (0-based index into ARRIVALS).
AIRPORT_DEPARTS_IN = {
    "Airport base, hangar 1": 1,
    "Airport base, hangar 2": 1,
    "Airport base, tents by the runway": 1,
    "Airport base, hangar 5": 1,
    "Airport base, canteen": 1,
    "Airport base, hangar 3": 2,
    "Airport base, terminal hall": 2,
    "Airport base, tents north": 2,
    "Airport base, hangar 4": 2,
    "Airport base, tents south": 2,
}

ORIGINS = [
    "Stepanakert",
    "Martuni",
    "Martakert",
    "Askeran",
    "Chartar",
    "Sarushen",
    "Karmir Shuka",
    "Khnapat",
    "Vank",
    "Drmbon",
    "Sarsang",
    "Haterk",
    "Mataghis",
    "Talish",
    "Ivanyan",
    "Khramort",
    "Nakhijevanik",
    "Aygestan",
    "Avetaranots",
    "Sos",
    "Machkalashen",
    "Herher",
    "Khndzristan",
    "Patara",
]
PLACES = [
    "school 1 yard",
    "school 8 gym",
    "Renaissance square",
    "stadium",
    "bus depot",
    "market hall",
    "district 11 courtyards",
    "university dormitory",
    "cultural centre",
    "Tumanyan street",
    "Azatamartikneri avenue",
    "Kirov street basements",
]

# Illustrative sex-and-age shares (not from a source): more older women than men, as in
# the region's census structure. They add up to 1.
SADD_SHARES = {
    "female_0_4": 0.06,
    "female_5_17": 0.11,
    "female_18_59": 0.22,
    "female_60_plus": 0.13,
    "male_0_4": 0.06,
    "male_5_17": 0.11,
    "male_18_59": 0.19,
    "male_60_plus": 0.12,
}
SLOT_HOURS = (4, 10, 16, 22)  # 08:00, 14:00, 20:00, 02:00 local: the rounds of counting
EXPLOSION = utc(25, 15)  # the fuel depot explosion near Stepanakert, evening of 25 Sep


@dataclass
class DemoGroup:
    label: str
    origin: str
    site_id: str
    size: int
    departs: datetime
    registered: datetime
    moved_at: datetime | None = None
    breakdown: bool = False
    reports: list[tuple[datetime, int, str | None]] = field(default_factory=list)

    @property
    def id(self) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"group:{self.label}")


def split(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights`, rounded so the parts add up exactly."""
    whole = sum(weights)
    raw = [total * w / whole for w in weights]
    parts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (raw[i] - parts[i], -i), reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def slots(start: datetime, end: datetime) -> list[datetime]:
    """The counting rounds in [start, end)."""
    moment = start.replace(minute=0, second=0, microsecond=0)
    found = []
    while moment < end:
        if moment.hour in SLOT_HOURS and moment >= start:
            found.append(moment)
        moment += timedelta(hours=1)
    return found


def build() -> list[DemoGroup]:
    rng = random.Random(SEED)
    groups: list[DemoGroup] = []
    airport = {label: (origin, size) for label, origin, size in AIRPORT_GROUPS}

    # Departures, interval by interval, so cumulative departures hit each figure exactly.
    previous_moment, previous_total = FIRST_DEPARTURE, 0
    departing: list[tuple[datetime, DemoGroup]] = []
    centre_count = 0
    for index, (moment, total) in enumerate(ARRIVALS):
        increment = total - previous_total
        fixed = [label for label, i in AIRPORT_DEPARTS_IN.items() if i == index]
        rest = increment - sum(airport[label][1] for label in fixed)
        if index == len(ARRIVALS) - 1:
            sizes = split(rest, [0.65, 0.35])
        else:
            count = max(2, round(rest / 560))
            sizes = split(rest, [rng.uniform(0.55, 1.45) for _ in range(count)])
        members: list[tuple[str, str, int, str]] = [
            (label, airport[label][0], airport[label][1], AIRPORT) for label in fixed
        ]
        for size in sizes:
            centre_count += 1
            origin = rng.choice(ORIGINS)
            place = PLACES[centre_count % len(PLACES)]
            members.append((f"{origin} families, {place} (group {centre_count})", origin, size, ""))
        rng.shuffle(members)
        span = moment - previous_moment
        for j, (label, origin, size, site) in enumerate(members):
            departs = previous_moment + span * (j + 1) / len(members)
            departs = departs.replace(second=0, microsecond=0)
            if j == len(members) - 1:
                departs = moment
            group = DemoGroup(
                label=label,
                origin=origin,
                site_id=site or CENTRE,
                size=size,
                departs=departs,
                registered=utc(20, 4),
                moved_at=AIRPORT_MOVES.get(label),
            )
            departing.append((departs, group))
        previous_moment, previous_total = moment, total

    # Registration: people gathered in the city from 20 Sep on; those who left first had
    # come first. Spread over 20 Sep 04:00 - 25 Sep 16:00, at least 12 h before leaving.
    departing.sort(key=lambda item: item[0])
    city = [g for _, g in departing if g.label not in airport]
    first, last = utc(20, 4), utc(25, 16)
    for j, group in enumerate(city):
        moment = first + (last - first) * j / max(1, len(city) - 1)
        moment = min(moment, group.departs - timedelta(hours=12))
        group.registered = slots(moment - timedelta(hours=6), moment + timedelta(hours=1))[-1]
    for _, group in departing:
        group.breakdown = rng.random() < 0.6
        _reports(group, rng)
        groups.append(group)
    return groups


def _reports(group: DemoGroup, rng: random.Random) -> None:
    """A count at every round from registration until the group leaves, and a last count
    at the buses half an hour before it leaves. A few rounds are missed (stale flags)."""
    is_airport = group.label.startswith("Airport base")
    rounds = slots(group.registered, group.departs - timedelta(minutes=30))
    for n, moment in enumerate(rounds):
        if is_airport and moment in AIRPORT_TOTALS and moment <= utc(21, 16):
            total = _airport_share(group, moment)
        elif is_airport:
            total = group.size
        else:
            total = round(group.size * (0.85, 0.95)[n]) if n < 2 else group.size
        if not is_airport and 0 < n < len(rounds) - 1 and rng.random() < 0.03:
            continue  # a missed round
        group.reports.append((moment, total, None))
        if not is_airport and n == 3 < len(rounds) - 2 and rng.random() < 0.04:
            # A second team's count 40 minutes later, missing a courtyard: a conflict.
            group.reports.append(
                (moment + timedelta(minutes=40), round(total * 0.7), "second count, other team")
            )
    group.reports.append(
        (group.departs - timedelta(minutes=30), group.size, "counted at the buses")
    )


def _airport_share(group: DemoGroup, moment: datetime) -> int:
    sizes = [size for _, _, size in AIRPORT_GROUPS]
    labels = [label for label, _, _ in AIRPORT_GROUPS]
    return split(AIRPORT_TOTALS[moment], sizes)[labels.index(group.label)]


def needs(group: DemoGroup, moment: datetime, explain: bool) -> str:
    """Needs named with a count; `explain` adds the notes (on a group's first and last count
    only, to keep the file small)."""
    at_airport = group.site_id == AIRPORT and (group.moved_at is None or moment < group.moved_at)
    if at_airport and moment < utc(22, 0):
        found = ["shelter:4", "water:4", "food:3:bread from the peacekeepers' kitchen"]
    elif at_airport:
        found = ["shelter:3", "water:3", "food:3", "transport:4"]
    else:
        found = ["food:4:nine months of blockade", "fuel:5"]
        if moment >= utc(24, 0):
            found.append("transport:5:cars without fuel; buses needed".replace(";", ","))
        if moment >= EXPLOSION:
            found.append("health:5:burns after the fuel depot explosion")
    if not explain:
        found = [":".join(need.split(":")[:2]) for need in found]
    return ";".join(found)


def vulnerable(group: DemoGroup, total: int, moment: datetime) -> dict[str, int]:
    found = {
        "pregnant_lactating": round(total * 0.02),
        "disabled": round(total * 0.03),
        "chronically_ill": round(total * 0.08),
        "unaccompanied_minors": 1 if total > 700 else 0,
    }
    if moment >= EXPLOSION:
        found["injured"] = round(total * 0.01)
    return found


def local(moment: datetime) -> str:
    return moment.astimezone(LOCAL).isoformat()


def write(groups: list[DemoGroup], groups_csv: Path = GROUPS_CSV, replay_csv: Path = REPLAY_CSV):
    with groups_csv.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["group_id", "group_label", "origin", "site_id", "moved_to", "moved_at", "departed_at"]
        )
        for g in sorted(groups, key=lambda g: (g.registered, g.label)):
            writer.writerow(
                [
                    g.id,
                    g.label,
                    g.origin,
                    g.site_id,
                    CENTRE if g.moved_at else "",
                    local(g.moved_at) if g.moved_at else "",
                    local(g.departs),
                ]
            )
    rows = []
    for g in groups:
        for n, (moment, total, note) in enumerate(g.reports):
            sadd = split(total, [SADD_SHARES[k] for k in SADD_KEYS]) if g.breakdown else None
            vuln = vulnerable(g, total, moment) if g.breakdown else {}
            rows.append(
                [
                    uuid.uuid5(NAMESPACE, f"report:{g.label}:{moment.isoformat()}"),
                    g.id,
                    local(moment),
                    total,
                    *(sadd if sadd else [""] * len(SADD_KEYS)),
                    *(vuln.get(k, "") for k in VULNERABLE_KEYS),
                    needs(g, moment, explain=n in (0, len(g.reports) - 1)),
                    note or "",
                    moment,
                ]
            )
    rows.sort(key=lambda r: (r[-1], str(r[1])))
    with replay_csv.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "client_id",
                "group_id",
                "observed_at",
                "total",
                *SADD_KEYS,
                *VULNERABLE_KEYS,
                "needs",
                "note",
            ]
        )
        for row in rows:
            writer.writerow(row[:-1])


if __name__ == "__main__":
    write(build())
    print(f"wrote {GROUPS_CSV} and {REPLAY_CSV}")
