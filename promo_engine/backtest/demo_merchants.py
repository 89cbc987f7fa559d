"""The merchants and customers of the demo wallet history.

Merchants carry real merchant category codes from the `iso18245` tables, in the mix a Chinese
wallet sees: restaurants, fast food and coffee, supermarkets and convenience stores, the
metro, taxis, trains and online shops, with a long tail of pharmacies, cinemas and phone
top-ups. Each category has its own amounts, payment channels and hours. The partner
merchants of the example campaigns (campaigns/*.yaml: m_100, m_200, m_310, m_420, m_530) are
always there, busy chains with the categories those campaigns ask for, so that back-testing
the examples on demo data shows them granting rewards.

Customers belong to a segment (student, young_pro, family, senior), sent as the `segment`
attribute, which shapes where, how often and how much they pay.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

import iso18245


@dataclass(frozen=True)
class Category:
    key: str
    mcc: str                # ISO 18245 merchant category code
    weight: float           # share of the payments on an ordinary day (relative)
    outlets: float          # share of the merchants (relative)
    profile: str            # hour-of-day shape, a key of demo_calendar.PROFILES
    median: int             # typical amount in whole units of the currency (yuan)
    spread: float           # standard deviation of the amount's logarithm
    whole: float            # share of amounts in whole units (a 4-yuan fare, a 50-yuan top-up)
    channels: tuple[tuple[str, int], ...]  # (channel, relative share)

    @property
    def description(self) -> str:
        """The code's name in ISO 18245, e.g. "Eating places and restaurants"."""
        return iso18245.get_mcc(self.mcc).iso_description


QR, IN_STORE, ONLINE = "qr", "in_store", "online"
CATEGORIES: tuple[Category, ...] = (
    Category("restaurant", "5812", 15, 22, "meals", 78, .55, .4, ((QR, 65), (IN_STORE, 25), (ONLINE, 10))),
    Category("fast_food", "5814", 12, 12, "meals", 32, .4, .3, ((QR, 60), (IN_STORE, 15), (ONLINE, 25))),
    Category("coffee", "5814", 7, 5, "coffee", 30, .25, .2, ((QR, 70), (IN_STORE, 15), (ONLINE, 15))),
    Category("bakery", "5462", 3, 4, "coffee", 24, .45, .3, ((QR, 80), (IN_STORE, 20))),
    Category("supermarket", "5411", 12, 6, "shop", 85, .8, .1, ((QR, 55), (IN_STORE, 40), (ONLINE, 5))),
    Category("convenience", "5499", 14, 10, "convenience", 16, .6, .2, ((QR, 85), (IN_STORE, 15))),
    Category("commute", "4111", 10, 1, "commute", 4, .3, 1, ((QR, 100),)),
    Category("taxi", "4121", 4, 1, "commute", 26, .5, .2, ((ONLINE, 65), (QR, 35))),
    Category("rail", "4112", 1, .3, "daytime", 220, .6, .6, ((ONLINE, 100),)),
    Category("fuel", "5541", 2, 3, "daytime", 260, .35, .5, ((QR, 60), (IN_STORE, 40))),
    Category("online", "5399", 8, 2, "online", 120, 1.0, .2, ((ONLINE, 100),)),
    Category("department", "5311", 2, 2, "shop", 320, .8, .3, ((QR, 45), (IN_STORE, 55))),
    Category("clothing", "5651", 2, 6, "shop", 260, .6, .6, ((QR, 60), (IN_STORE, 30), (ONLINE, 10))),
    Category("electronics", "5732", 1, 2, "shop", 900, .9, .5, ((ONLINE, 50), (IN_STORE, 30), (QR, 20))),
    Category("pharmacy", "5912", 3, 5, "daytime", 58, .7, .2, ((QR, 70), (IN_STORE, 25), (ONLINE, 5))),
    Category("cinema", "7832", 1, 1, "evening", 48, .3, .7, ((ONLINE, 60), (QR, 40))),
    Category("telecom", "4814", 1.5, .3, "daytime", 50, .4, 1, ((ONLINE, 100),)),
    Category("utilities", "4900", 1, .3, "daytime", 160, .6, .1, ((ONLINE, 100),)),
    Category("beauty", "7230", 1, 4, "daytime", 98, .5, .8, ((QR, 80), (IN_STORE, 20))),
    Category("hotel", "7011", .5, 2, "online", 420, .5, .6, ((ONLINE, 70), (IN_STORE, 30))),
    Category("bars", "5813", 1, 3, "night", 180, .6, .5, ((QR, 70), (IN_STORE, 30))),
    Category("books", "5942", .5, 1.4, "shop", 68, .5, .3, ((QR, 60), (ONLINE, 40))),
)
CATEGORY_INDEX = {category.key: index for index, category in enumerate(CATEGORIES)}

# The example campaigns' merchants (campaigns/*.yaml). spring-dining needs restaurants or fast
# food (5812, 5814) paid by QR or in store; weekend-3x adds m_420 and m_530.
PARTNERS = (("m_100", "restaurant"), ("m_200", "restaurant"), ("m_310", "fast_food"),
            ("m_420", "supermarket"), ("m_530", "coffee"))
# A partner chain's share of the payments in its category (as a customer's usual shop and
# as walk-in trade): busy enough for its campaigns to fire every day.
PARTNER_SHARE = 0.08
MIN_MERCHANTS, MAX_MERCHANTS, CUSTOMERS_PER_MERCHANT = 80, 5000, 20


@dataclass(frozen=True)
class Segment:
    name: str
    share: float            # of the customers
    frequency: float        # payments per day, relative
    spend: float            # amounts, relative
    likes: dict[str, float]  # category key -> weight multiplier


SEGMENTS: tuple[Segment, ...] = (
    Segment("student", .22, .9, .7, {"fast_food": 1.6, "coffee": 1.3, "commute": 1.5,
                                     "cinema": 1.8, "online": 1.3, "books": 2.0, "bars": .5,
                                     "department": .5, "fuel": .1, "utilities": .2,
                                     "hotel": .3, "electronics": .7}),
    Segment("young_pro", .38, 1.2, 1.1, {"coffee": 1.8, "taxi": 1.5, "restaurant": 1.2,
                                         "online": 1.2, "bars": 1.5, "supermarket": .8}),
    Segment("family", .28, 1.0, 1.25, {"supermarket": 1.8, "fuel": 1.8, "utilities": 1.8,
                                       "pharmacy": 1.3, "fast_food": .8, "bars": .4,
                                       "coffee": .7}),
    Segment("senior", .12, .6, .9, {"supermarket": 1.5, "pharmacy": 2.5, "commute": .8,
                                    "coffee": .3, "online": .5, "bars": .2, "cinema": .5,
                                    "taxi": .8, "fast_food": .5}),
)


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    category: int           # index into CATEGORIES
    mcc: str


def merchant_count(users: int) -> int:
    """How many merchants a history of `users` customers has: one for every 20 customers,
    at least 80 (every category has a few) and at most 5,000."""
    return max(MIN_MERCHANTS, min(MAX_MERCHANTS, users // CUSTOMERS_PER_MERCHANT))


def catalogue(users: int) -> list[Merchant]:
    """The partners first, then m_0001, m_0002, ... with the categories interleaved (so that
    no range of ids is all restaurants). Depends on the number of merchants only: the same
    id is the same kind of shop in every demo file of that size."""
    placed: list[tuple[float, int]] = []
    for index, how_many in enumerate(_outlets(merchant_count(users) - len(PARTNERS))):
        placed.extend(((slot + 0.5) / how_many, index) for slot in range(how_many))
    placed.sort()
    width = max(4, len(str(len(placed))))
    merchants = [Merchant(merchant_id, CATEGORY_INDEX[key], CATEGORIES[CATEGORY_INDEX[key]].mcc)
                 for merchant_id, key in PARTNERS]
    merchants.extend(Merchant(f"m_{number:0{width}d}", index, CATEGORIES[index].mcc)
                     for number, (_, index) in enumerate(placed, start=1))
    return merchants


def _outlets(count: int) -> list[int]:
    """`count` merchants shared out among the categories: two each, the rest in proportion
    to their `outlets` (largest remainders first)."""
    spare = count - 2 * len(CATEGORIES)
    total = sum(category.outlets for category in CATEGORIES)
    exact = [spare * category.outlets / total for category in CATEGORIES]
    counts = [2 + int(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (int(exact[i]) - exact[i], i))
    for index in by_remainder[:count - sum(counts)]:
        counts[index] += 1
    return counts


POPULARITY_SLOTS = 1024


def popularity_tables(merchants: list[Merchant]) -> list[list[int]]:
    """For each category, POPULARITY_SLOTS merchant indices to draw from uniformly: a few
    shops get most of the walk-in trade (weights falling as 1/rank^0.9), the partner chains
    PARTNER_SHARE each."""
    partners = {merchant_id for merchant_id, _ in PARTNERS}
    tables = []
    for index in range(len(CATEGORIES)):
        members = [i for i, merchant in enumerate(merchants) if merchant.category == index]
        chains = [i for i in members if merchants[i].merchant_id in partners]
        others = [i for i in members if i not in chains]
        rest = 1.0 - PARTNER_SHARE * len(chains)
        zipf = [1.0 / (rank + 1) ** 0.9 for rank in range(len(others))]
        scale = rest / sum(zipf)
        weights = [PARTNER_SHARE] * len(chains) + [weight * scale for weight in zipf]
        tables.append(slots(chains + others, weights, POPULARITY_SLOTS))
    return tables


def favourite_tables(merchants: list[Merchant]) -> list[list[int]]:
    """For each category, the shops a customer's usual ones are picked from (by a hash of
    the customer): each partner chain is PARTNER_SHARE of them, every other shop equally
    likely; four entries a shop, so that every shop can be someone's usual one."""
    partners = {merchant_id for merchant_id, _ in PARTNERS}
    tables = []
    for index in range(len(CATEGORIES)):
        members = [i for i, merchant in enumerate(merchants) if merchant.category == index]
        chains = [i for i in members if merchants[i].merchant_id in partners]
        others = [i for i in members if i not in chains]
        rest = (1.0 - PARTNER_SHARE * len(chains)) / len(others)
        tables.append(slots(chains + others, [PARTNER_SHARE] * len(chains)
                            + [rest] * len(others), 4 * len(members)))
    return tables


def slots(values: list, weights: list[float], size: int) -> list:
    """`size` entries of `values`, each about in proportion to its weight (drawing one
    entry uniformly is drawing a value by weight, at the cost of one index)."""
    cumulative = list(accumulate(weights))
    total = cumulative[-1]
    last = len(values) - 1
    return [values[min(last, bisect_right(cumulative, (slot + 0.5) * total / size))]
            for slot in range(size)]


CHANNEL_SLOTS = 20


def channel_tables() -> list[list[str]]:
    """For each category, CHANNEL_SLOTS channels to draw from uniformly."""
    return [slots([name for name, _ in category.channels],
                   [float(share) for _, share in category.channels], CHANNEL_SLOTS)
            for category in CATEGORIES]


def segment_slots(size: int) -> list[int]:
    """`size` segment indices in proportion to the segments' shares."""
    return slots(list(range(len(SEGMENTS))), [segment.share for segment in SEGMENTS], size)
