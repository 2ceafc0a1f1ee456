"""One way to make a request and judge its answer, for every user class.

- An expected status is a success.
- 429 with a Retry-After header is the platform's abuse limit working as designed: counted,
  under its own name (`<name> [429]`), not as a failure. 429 without Retry-After is a failure.
- A 409 whose error code is a known race (two clerk desks claiming one case, a citizen
  withdrawing what was just decided) is counted under `<name> [409 <code>]`, not a failure.
- Everything else is a failure with the status and the error code.

`TALLY` counts what happened in the domain (applications submitted, cases decided…); each
locust process writes it out at the end of the run (see locustfile.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from locust.contrib.fasthttp import FastHttpSession

TALLY: Counter[str] = Counter()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    data: Any  # the JSON body, or None
    ok: bool  # an expected status
    error_code: str | None = None
    content: bytes = b""


def _error_code(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = data["error"].get("code")
        return str(code) if code is not None else None
    return None


def request(
    client: FastHttpSession,
    method: str,
    url: str,
    *,
    name: str,
    expect: Collection[int] = (200,),
    races: Collection[str] = (),
    check: Callable[[Any], str | None] | None = None,
    **kwargs: Any,
) -> Reply:
    """Make the request and judge it (see the module's docstring). `check` may refuse an
    expected answer by returning what is wrong with its JSON body."""
    with client.request(method, url, name=name, catch_response=True, **kwargs) as response:
        status = int(response.status_code or 0)
        data: Any = None
        content = response.content
        if content:
            try:
                data = json.loads(content)
            except ValueError:
                data = None
        code = _error_code(data)
        if status in expect:
            problem = check(data) if check is not None else None
            if problem:
                response.failure(problem)
                return Reply(status, data, False)
            response.success()
            return Reply(status, data, True, content=content or b"")
        if status == 429:
            headers = response.headers
            if headers is not None and headers.get("Retry-After"):
                response.request_meta["name"] = f"{name} [429]"
                response.success()
                TALLY["rate_limited"] += 1
            else:
                response.failure("429 without Retry-After")
            return Reply(status, data, False, code)
        if status == 409 and code in races:
            response.request_meta["name"] = f"{name} [409 {code}]"
            response.success()
            TALLY[f"race:{code}"] += 1
            return Reply(status, data, False, code)
        if status == 0:  # no answer: refused, reset or timed out
            detail = f"no response: {getattr(response, 'error', None)!r}"
        else:
            detail = f"{status} {code}" if code else f"{status}"
        response.failure(detail)
        return Reply(status, data, False, code)
