"""City-specific facts: the values FAQ answers refer to by placeholder.

Cities differ in due months, fees and office hours; keeping those out of the
answers lets one FAQ serve every city and lets a city change a fee in one place.
"""

from __future__ import annotations

import datetime as dt
import os
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CITY_ENV = "VOICEBOT_CITY"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CityConfigError(ValueError):
    """The city file cannot be used; the message names the file and field."""


class BusinessHours(BaseModel):
    """When staff answer transferred calls."""

    model_config = ConfigDict(extra="forbid")

    weekdays: list[str] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    open: dt.time = dt.time(8, 45)
    close: dt.time = dt.time(17, 30)
    timezone: str = "Asia/Tokyo"
    closed_dates: list[dt.date] = Field(default_factory=list)

    def is_open(self, when: dt.datetime) -> bool:
        """True if ``when`` (aware, or naive meaning local time) is within staffed hours."""
        tz = ZoneInfo(self.timezone)
        local = when.astimezone(tz) if when.tzinfo else when.replace(tzinfo=tz)
        if WEEKDAYS[local.weekday()] not in self.weekdays:
            return False
        if local.date() in self.closed_dates:
            return False
        return self.open <= local.time() < self.close


class CityConfig(BaseModel):
    """Facts spoken in answers. Every string is read aloud as written."""

    model_config = ConfigDict(extra="forbid")

    city_name: str = "当市"
    tax_section: str = "市税の担当窓口"
    office_location: str = "市役所の税務担当の窓口"
    office_hours: str = "平日の午前8時45分から午後5時30分まで"
    office_phone: str = "市役所の代表電話"
    juminzei_due_months: str = "6月、8月、10月、翌年の1月"
    kotei_due_months: str = "4月、7月、12月、翌年の2月"
    keiji_due_date: str = "5月末"
    cert_fee: str = "1通300円"
    cert_online: str = "コンビニ交付"
    tax_office: str = "お住まいの地域を担当する税務署"
    prefecture_tax_office: str = "県税事務所"
    health_insurance_section: str = "国民健康保険や介護保険の担当課"
    pension_office: str = "年金事務所"
    business_hours: BusinessHours = Field(default_factory=BusinessHours)

    def values(self) -> dict[str, str]:
        """The placeholder values, by field name."""
        return {k: v for k, v in self.model_dump().items() if isinstance(v, str)}


def default_city_file() -> Path:
    """The city file shipped with the package (general defaults)."""
    return Path(str(resources.files("faq") / "data" / "city.yaml"))


def load_city(path: Path | str | None = None) -> CityConfig:
    """Load the city config from ``path``, ``$VOICEBOT_CITY`` or the shipped defaults."""
    chosen = Path(path or os.environ.get(CITY_ENV) or default_city_file())
    try:
        raw = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise CityConfigError(f"{chosen}: cannot read city file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CityConfigError(f"{chosen}: not valid YAML: {exc}") from exc
    try:
        return CityConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise CityConfigError(f"{chosen}: {problems}") from exc
