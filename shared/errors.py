"""One error base class and its handlers.

Every error a client can see carries a stable machine code, an HTTP status and a message in
Simplified Chinese: `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)


class AppError(Exception):
    status_code = 400
    code = "bad_request"
    message = "请求有误"
    # True when the unit of work should still commit what was flushed (e.g. a failed login
    # attempt that must be counted although the request fails).
    keep_changes = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status_code = status_code or self.status_code
        self.details = details
        self.headers = headers
        super().__init__(self.message)


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "找不到该记录"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
    message = "请先登录"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "无权进行此操作"


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "操作与当前状态冲突"


class InvalidInput(AppError):
    status_code = 422
    code = "invalid_input"
    message = "提交的内容有误"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    message = "系统繁忙，请稍后再试"

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_STATUS_MESSAGES = {
    400: ("bad_request", "请求有误"),
    401: ("unauthorized", "请先登录"),
    403: ("forbidden", "无权进行此操作"),
    404: ("not_found", "找不到该地址"),
    405: ("method_not_allowed", "不支持该请求方式"),
    413: ("payload_too_large", "提交的内容过大"),
    415: ("unsupported_media_type", "不支持的内容类型"),
    429: ("too_many_requests", "操作过于频繁，请稍后再试"),
}


# Chinese messages for pydantic's own error types; our validators raise their own codes.
_PYDANTIC_MESSAGES = {
    "missing": "此项为必填项",
    "string_too_short": "内容太短或为空",
    "string_too_long": "内容太长",
    "string_type": "应为文字",
    "string_pattern_mismatch": "格式不正确",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数",
    "decimal_parsing": "应为数字",
    "decimal_type": "应为数字",
    "decimal_max_places": "小数位数过多",
    "decimal_max_digits": "数字位数过多",
    "float_parsing": "应为数字",
    "greater_than": "数值过小",
    "greater_than_equal": "数值过小",
    "less_than": "数值过大",
    "less_than_equal": "数值过大",
    "enum": "取值不在允许范围内",
    "literal_error": "取值不在允许范围内",
    "bool_parsing": "应为是或否",
    "date_parsing": "日期格式不正确",
    "datetime_parsing": "时间格式不正确",
    "uuid_parsing": "编号格式不正确",
    "json_invalid": "JSON 格式有误",
    "model_type": "格式有误，应为对象",
    "dict_type": "格式有误，应为对象",
    "list_type": "格式有误，应为列表",
    "too_short": "条目太少",
    "too_long": "条目太多",
    "extra_forbidden": "不允许的字段",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        code = str(err.get("type", "invalid"))
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in {"body", "query", "path", "header"} and len(loc) > 1:
            loc = loc[1:]
        message = _PYDANTIC_MESSAGES.get(code) or (
            str(err["msg"])
            if code not in _PYDANTIC_MESSAGES and _is_chinese(err.get("msg"))
            else "内容有误"
        )
        details.append({"field": ".".join(loc), "code": code, "message": message})
    return details


def _is_chinese(text: object) -> bool:
    return isinstance(text, str) and any("\u4e00" <= ch <= "\u9fff" for ch in text)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(
                "invalid_input", "提交的内容格式有误，请检查后重试", _validation_details(exc)
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _STATUS_MESSAGES.get(exc.status_code, ("http_error", "请求有误"))
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )

    async def _unavailable(exc: Exception) -> JSONResponse:
        # A database or Redis that is down or saturated is a temporary condition: tell the
        # client to come back, never answer 500.
        log.warning("dependency_unavailable", error=type(exc).__name__)
        return JSONResponse(
            error_body("service_unavailable", "系统繁忙，请稍后再试"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    @app.exception_handler(ConnectionError)
    async def _dependency_down(_: Request, exc: Exception) -> JSONResponse:
        return await _unavailable(exc)

    @app.exception_handler(DBAPIError)
    async def _database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if is_connection_error(exc):
            return await _unavailable(exc)
        if refused_characters(exc):
            # Text PostgreSQL cannot hold (NUL, \u0000 in JSON): the client's input, and the
            # transaction was rolled back whole.
            return JSONResponse(
                error_body(
                    "text_invalid_characters",
                    "提交的内容含有无法识别的字符（如空字符），请删除后重试",
                ),
                status_code=422,
            )
        raise exc


_REFUSED_TEXT_STATES = {"22021", "22P05"}  # character_not_in_repertoire, untranslatable


def refused_characters(exc: DBAPIError) -> bool:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        if getattr(candidate, "sqlstate", None) in _REFUSED_TEXT_STATES:
            return True
    return False


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that mean the database is unreachable, restarting or shutting down."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig or exc
    name = type(exc).__name__
    return isinstance(exc, ConnectionError | OSError) or name in {
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "InterfaceError",
        "ConnectionRefusedError",
        "TooManyConnectionsError",
    }
