"""The demo's value domains: regions, countries and their currencies and time zones, payment methods,
profile themes and tags, and the names users get."""

from __future__ import annotations

from types import MappingProxyType

COUNTRIES = MappingProxyType(
    {
        "na": (("US", "USD"), ("US", "USD"), ("US", "USD"), ("CA", "CAD")),
        "eu": (("DE", "EUR"), ("FR", "EUR"), ("ES", "EUR"), ("IT", "EUR"), ("NL", "EUR"), ("PL", "PLN")),
        "apac": (("JP", "JPY"), ("AU", "AUD"), ("IN", "INR"), ("SG", "SGD"), ("KR", "KRW")),
        "latam": (("BR", "BRL"), ("MX", "MXN"), ("AR", "ARS"), ("CO", "COP"), ("CL", "CLP")),
    }
)
"""Region -> (country, currency) choices; a country listed twice is drawn twice as often."""
REGIONS, REGION_WEIGHTS = ("na", "eu", "apac", "latam"), (35, 35, 20, 10)
CURRENCY = MappingProxyType({country: cur for choices in COUNTRIES.values() for country, cur in choices})
METHODS, METHOD_WEIGHTS = ("card", "paypal", "bank_transfer"), (70, 20, 10)
TIMEZONES = MappingProxyType(
    {
        "US": ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
        "CA": ("America/Toronto", "America/Vancouver"), "DE": ("Europe/Berlin",), "FR": ("Europe/Paris",),
        "ES": ("Europe/Madrid",), "IT": ("Europe/Rome",), "NL": ("Europe/Amsterdam",),
        "PL": ("Europe/Warsaw",), "JP": ("Asia/Tokyo",), "AU": ("Australia/Sydney", "Australia/Perth"),
        "IN": ("Asia/Kolkata",), "SG": ("Asia/Singapore",), "KR": ("Asia/Seoul",),
        "BR": ("America/Sao_Paulo",), "MX": ("America/Mexico_City",), "CO": ("America/Bogota",),
        "AR": ("America/Argentina/Buenos_Aires",), "CL": ("America/Santiago",),
    }
)  # fmt: skip
"""Country -> the time zones a user there may set."""
THEMES = ("dark", "light")
TAGS, TAG_COUNT_WEIGHTS = ("beta", "vip", "early_adopter", "newsletter"), (50, 30, 15, 5)
"""Profile tags; a profile has 0, 1, 2 or 3 of them with these weights."""
FIRST_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam")
LAST_NAMES = ("Adams", "Berg", "Costa", "Diaz", "Evans", "Fox", "Garcia", "Hall", "Ito", "Jensen", "Kim")
