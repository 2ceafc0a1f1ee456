"""The fuzzer behind test_api_schemathesis.py: schemathesis generates requests for one
operation, hypothesis drives them (bounded, derandomized), httpx sends them to the app on
the test's event loop, and schemathesis' checks plus the contract's own judge the answers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.schemas import APIOperation

from tests.fuzz.strategies import Realistic
from tests.fuzz.world import Service

Operation = APIOperation[Any, Any, Any, Any]
Check = Callable[[Any, Response, Case[Any]], bool | None]

_MACHINE_CODE = re.compile(r"[a-z][a-z0-9_]*")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def error_envelope(ctx: Any, response: Response, case: Case[Any]) -> bool | None:
    """DESIGN.md: every error is {"error": {"code", "message", "details"}} with a stable
    machine code and a zh-CN message; a 429 also says when to come back."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"error response is not JSON: {response.content[:200]!r}") from exc
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error envelope: {body}"
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and _MACHINE_CODE.fullmatch(error["code"]), error
    assert isinstance(error["message"], str) and _CJK.search(error["message"]), error
    if response.status_code == 429:
        assert "retry-after" in response.headers, "429 without Retry-After"
    return None


def documented_success(ctx: Any, response: Response, case: Case[Any]) -> bool | None:
    """A 2xx must be one the schema declares (201 where it says 201)."""
    status = response.status_code
    if 200 <= status < 300:
        declared = case.operation.responses.status_codes
        assert str(status) in declared, f"{status} not among declared {declared}"
    return None


def refused_without_token(ctx: Any, response: Response, case: Case[Any]) -> bool | None:
    """An operation that takes a token does nothing for a caller without a valid one."""
    assert not 200 <= response.status_code < 300, "answered 2xx without a valid token"
    return None


def only_visible(allowed: dict[str, set[str]]) -> Check:
    """A 2xx on a path naming an application or case only for one the caller may see:
    the citizen his own, the clerk his department's and county's."""

    def only_visible(ctx: Any, response: Response, case: Case[Any]) -> bool | None:
        if 200 <= response.status_code < 300:
            for name, value in (case.path_parameters or {}).items():
                if name in allowed:
                    assert str(value) in allowed[name], f"2xx for someone else's {name} {value}"
        return None

    return only_visible


CHECKS: list[Check] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    error_envelope,
    documented_success,
    # Not `status_code_conformance`: FastAPI declares only 200/201 and 422 per operation,
    # while the contract answers 401/403/404/409/413/415/423/429 with the error envelope
    # on purpose. It would flag almost every request and hide real findings. Instead
    # `documented_success` holds 2xx statuses to the schema and `error_envelope` holds
    # every 4xx to the contract's body; `not_a_server_error` refuses any 5xx.
]


# --- the fuzzer -------------------------------------------------------------------------


@dataclass
class Finding:
    check: str
    message: str
    request: str
    response: str
    exception: str | None


@dataclass
class Fuzz:
    """Runs hypothesis in a worker thread; each request is sent on the test's event loop."""

    operation: Operation
    service: Service
    loop: asyncio.AbstractEventLoop
    auth: dict[str, str]
    pools: dict[str, list[str]]
    realistic: st.SearchStrategy[Realistic] | None
    max_examples: int
    extra_checks: list[Check] = field(default_factory=list)
    witness: Case[Any] | None = None  # a request sent first, whatever hypothesis draws
    tried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # "422 id_number_checksum": how far requests got, for the summary.
    error_codes: Counter[str] = field(default_factory=Counter)
    findings: dict[str, Finding] = field(default_factory=dict)

    def run(self) -> None:
        if self.witness is not None:
            self.send(self.witness, {}, None)
        cases = st.one_of(
            self.operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            self.operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
        names = [p.name for p in self.operation.path_parameters]
        # A real identifier three times in four: requests reach past "not found".
        path = st.fixed_dictionaries(
            {n: st.sampled_from([None, *self.pools[n]]) for n in names if self.pools.get(n)}
        )
        # Two requests in three with a realistic body where there is one.
        bodies = (
            st.none()
            if self.realistic is None
            else st.one_of(st.none(), self.realistic, self.realistic)
        )

        @settings(max_examples=self.max_examples, suppress_health_check=list(HealthCheck))
        @given(case=cases, path_values=path, realistic=bodies)
        def example(
            case: Case[Any], path_values: dict[str, str | None], realistic: Realistic | None
        ) -> None:
            self.send(case, path_values, realistic)

        example()

    def send(
        self, case: Case[Any], path_values: dict[str, str | None], realistic: Realistic | None
    ) -> None:
        for name, value in path_values.items():
            if value is not None and case.path_parameters is not None:
                case.path_parameters[name] = value
        extra = dict(self.auth)  # the role's token replaces any generated Authorization
        if realistic is not None and case.media_type == realistic.media_type:
            case.body = realistic.body
            extra.update(realistic.headers)
            if realistic.fresh_key:
                extra["Idempotency-Key"] = f"fuzz-key-{next(_KEYS):06d}"
        kwargs = case.as_transport_kwargs(base_url=str(self.service.client.base_url), headers=extra)
        prepared = requests.Request(
            **{k: v for k, v in kwargs.items() if k in _REQUEST_ARGS}
        ).prepare()
        self.service.recorder.last = None
        future = asyncio.run_coroutine_threadsafe(_send(self.service.client, prepared), self.loop)
        response = future.result(timeout=120)
        self.tried += 1
        self.statuses[response.status_code] += 1
        if response.status_code >= 400:
            self.error_codes[f"{response.status_code} {_error_code(response)}"] += 1
        try:
            case.validate_response(
                _as_schemathesis(response, prepared), checks=[*CHECKS, *self.extra_checks]
            )
        except FailureGroup as group:
            for failure in group.exceptions:
                key = f"{failure.title} ({response.status_code})"
                self.findings.setdefault(
                    key,
                    Finding(
                        check=key,
                        message=failure.message[:600],
                        request=f"{prepared.method} {prepared.url} {_text(_body(prepared))}",
                        response=f"{response.status_code} {_text(response.content)}",
                        exception=self.service.recorder.last,
                    ),
                )

    def report(self) -> str:
        lines = [f"{self.operation.label}: {len(self.findings)} distinct failure(s)"]
        for f in self.findings.values():
            lines += [
                f"- {f.check}",
                f"  request:  {f.request}",
                f"  response: {f.response}",
                f"  raised:   {f.exception}" if f.exception else "",
                "  " + f.message.replace("\n", "\n  "),
            ]
        return "\n".join(line for line in lines if line)


_KEYS = itertools.count(1)
_REQUEST_ARGS = frozenset(
    {"method", "url", "headers", "params", "cookies", "json", "data", "files"}
)


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


async def _send(client: httpx.AsyncClient, prepared: requests.PreparedRequest) -> httpx.Response:
    body = _body(prepared)
    headers = [(_latin1(k), _latin1(v)) for k, v in prepared.headers.items()]
    return await client.request(
        prepared.method or "GET",
        prepared.url or "/",
        headers=headers,
        content=body.encode() if isinstance(body, str) else body,
    )


def _as_schemathesis(response: httpx.Response, prepared: requests.PreparedRequest) -> Response:
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.multi_items():
        headers.setdefault(name.lower(), []).append(value)
    return Response(
        status_code=response.status_code,
        headers=headers,
        content=response.content,
        request=prepared,
        elapsed=response.elapsed.total_seconds(),
        verify=True,
        message=response.reason_phrase,
        encoding=response.encoding,
    )


def _body(prepared: requests.PreparedRequest) -> bytes | str | None:
    return prepared.body if isinstance(prepared.body, bytes | str) else None


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        details = error.get("details")
        if error["code"] == "invalid_input" and isinstance(details, list) and details:
            return f"invalid_input:{details[0].get('code')}"
        return str(error["code"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"


def _text(body: bytes | str | None, limit: int = 300) -> str:
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text if len(text) <= limit else text[:limit] + "…"
