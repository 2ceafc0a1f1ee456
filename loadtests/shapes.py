"""Load shapes: a day of the relief platform, compressed.

- `DailyCurve`: an ordinary day — quiet night, a morning peak (8–10h) and an evening peak
  (19–21h) of rural users — compressed `speed` times (LOADTEST_SPEED, default 100: a day in
  864 s). Users follow the curve so that, on average, visits per second are
  16,800 × speed / 86,400 (19.4/s at 100×).
- `SweepDay`: the same day at 10× the volume, as during a concentrated sweep (集中大排查).
- `Spike`: the daily average, then 50× for a short burst, then back, then the end.

How users become requests: see `profile.py` (users = visits per second ÷ a user's visit rate,
plus two fixed ops users). Each shape ends by returning None. Pick one with LOADTEST_SHAPE
(daily | sweep | spike) or, with the web UI, `--class-picker`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from locust import LoadTestShape

from loadtests.profile import (
    DEFAULT_SPEED,
    SECONDS_PER_DAY,
    TrafficProfile,
    profile_from_env,
    visits_per_second,
)

# Relative visit rate by hour of day (Beijing time), at the middle of each hour. Rural users:
# almost nobody at night, a morning peak before going to the fields, a dip at noon and in the
# afternoon, the highest peak in the evening at home. Normalised below to an average of 1.
_RAW_HOURLY = (
    0.15, 0.08, 0.05, 0.05, 0.06, 0.15,  # 0–5h
    0.45, 1.00, 1.80, 2.00, 1.70, 1.30,  # 6–11h
    1.00, 0.90, 1.00, 1.05, 1.00, 0.95,  # 12–17h
    1.20, 1.80, 2.10, 1.70, 0.90, 0.40,  # 18–23h
)  # fmt: skip
HOURLY = tuple(value * len(_RAW_HOURLY) / sum(_RAW_HOURLY) for value in _RAW_HOURLY)
SPAWN_SECONDS = 5.0  # a change of load reaches its target within about this many seconds
MIN_SPAWN_RATE = 2.0
MAX_SPAWN_RATE = 100.0  # locust warns above this; only a spike needs more


def day_factor(hour: float) -> float:
    """The relative visit rate at `hour` (0 ≤ hour < 24), linear between hour midpoints.
    Its average over the day is exactly 1 (the trapezoids of a closed curve)."""
    position = (hour - 0.5) % 24
    low = int(position)
    fraction = position - low
    return HOURLY[low] * (1 - fraction) + HOURLY[(low + 1) % 24] * fraction


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    return float(value) if value not in (None, "") else default


class CompressedDay(LoadTestShape):
    """A day of `volume` × the ordinary traffic, compressed `speed` times."""

    abstract = True
    volume = 1.0

    def __init__(
        self,
        *,
        speed: float | None = None,
        start_hour: float | None = None,
        duration: float | None = None,
        profile: TrafficProfile | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        env = os.environ if environ is None else environ
        self.speed = (
            speed if speed is not None else _env_float(env, "LOADTEST_SPEED", DEFAULT_SPEED)
        )
        if self.speed <= 0:
            raise ValueError("LOADTEST_SPEED must be positive")
        self.start_hour = (
            start_hour if start_hour is not None else _env_float(env, "LOADTEST_START_HOUR", 0)
        ) % 24
        day = SECONDS_PER_DAY / self.speed
        limit = duration if duration is not None else _env_float(env, "LOADTEST_DURATION", 0)
        self.duration = min(day, limit) if limit > 0 else day
        self.profile = profile or profile_from_env(env)
        self.peak_users = max(self.users_at(t) for t in self._samples())

    def _samples(self) -> list[float]:
        steps = max(1, int(self.duration))
        return [self.duration * i / steps for i in range(steps)]

    def hour_at(self, run_time: float) -> float:
        return (self.start_hour + run_time * self.speed / 3600) % 24

    def visits_rps_at(self, run_time: float) -> float:
        average = visits_per_second(self.speed, self.volume)
        return average * day_factor(self.hour_at(run_time))

    def users_at(self, run_time: float) -> int:
        return self.profile.users_for(self.visits_rps_at(run_time))

    def peak_visits_rps(self) -> float:
        return max(self.visits_rps_at(t) for t in self._samples())

    def tick(self) -> tuple[int, float] | None:
        run_time: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if run_time >= self.duration:
            return None
        spawn_rate = min(MAX_SPAWN_RATE, max(MIN_SPAWN_RATE, self.peak_users / SPAWN_SECONDS))
        return self.users_at(run_time), spawn_rate


class DailyCurve(CompressedDay):
    """An ordinary day: 16,800 visits, ~700 applications, compressed `speed` times."""

    volume = 1.0


class SweepDay(CompressedDay):
    """A day of a concentrated sweep campaign: 10× an ordinary day's volume."""

    volume = 10.0


class Spike(LoadTestShape):
    """The compressed day's average, then `factor` × that for `burst` seconds, then back.

    Timeline (wall-clock seconds, from LOADTEST_SPIKE_* or the defaults): `before` at the
    average, `burst` at factor × average, `after` at the average again, then the end.
    """

    def __init__(
        self,
        *,
        speed: float | None = None,
        factor: float | None = None,
        before: float | None = None,
        burst: float | None = None,
        after: float | None = None,
        profile: TrafficProfile | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        env = os.environ if environ is None else environ
        self.speed = (
            speed if speed is not None else _env_float(env, "LOADTEST_SPEED", DEFAULT_SPEED)
        )
        self.factor = factor if factor is not None else _env_float(env, "LOADTEST_SPIKE_FACTOR", 50)
        self.before = before if before is not None else _env_float(env, "LOADTEST_SPIKE_BEFORE", 60)
        self.burst = burst if burst is not None else _env_float(env, "LOADTEST_SPIKE_SECONDS", 60)
        self.after = after if after is not None else _env_float(env, "LOADTEST_SPIKE_AFTER", 120)
        if min(self.speed, self.factor, self.burst) <= 0 or min(self.before, self.after) < 0:
            raise ValueError("spike: speed, factor and burst must be positive")
        self.duration = self.before + self.burst + self.after
        self.profile = profile or profile_from_env(env)
        self.base_users = self.profile.users_for(visits_per_second(self.speed))
        self.peak_users = self.profile.users_for(visits_per_second(self.speed, self.factor))

    def in_burst(self, run_time: float) -> bool:
        return self.before <= run_time < self.before + self.burst

    def visits_rps_at(self, run_time: float) -> float:
        volume = self.factor if self.in_burst(run_time) else 1.0
        return visits_per_second(self.speed, volume)

    def users_at(self, run_time: float) -> int:
        return self.peak_users if self.in_burst(run_time) else self.base_users

    def peak_visits_rps(self) -> float:
        return visits_per_second(self.speed, self.factor)

    def tick(self) -> tuple[int, float] | None:
        run_time: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if run_time >= self.duration:
            return None
        if run_time < self.before:
            spawn_rate = max(MIN_SPAWN_RATE, self.base_users / SPAWN_SECONDS)
        else:  # up fast, and down as fast
            spawn_rate = max(MIN_SPAWN_RATE, self.peak_users / SPAWN_SECONDS)
        return self.users_at(run_time), spawn_rate


SHAPES: dict[str, type[DailyCurve] | type[SweepDay] | type[Spike]] = {
    "daily": DailyCurve,
    "sweep": SweepDay,
    "spike": Spike,
}
