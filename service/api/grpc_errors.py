"""Undecodable gRPC requests end as INVALID_ARGUMENT with the decoder's reason, not UNKNOWN with a Python
exception name (grpc's default when a request deserializer raises); each one is counted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class _Undecodable:
    """What the wrapped deserializer returns for bytes it cannot parse."""

    reason: str


def _safe(deserializer: Callable[[bytes], object] | None) -> Callable[[bytes], object] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> object:
        try:
            return deserializer(data)
        except Exception as e:  # DecodeError, or any parser failure: the client's bytes, not our fault
            return _Undecodable(str(e)[:300] or type(e).__name__)

    return parse


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method's request deserializer; `on_undecodable(method)` is called once per refused request."""

    def __init__(self, on_undecodable: Callable[[str], None] = lambda method: None):
        self._count = on_undecodable

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        message = f"request of {method} is not a valid protobuf message"

        async def refuse(context, bad: _Undecodable):
            self._count(method)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{message}: {bad.reason}")

        def checked_stream(requests, context):
            async def gen():
                async for r in requests:
                    if isinstance(r, _Undecodable):
                        await refuse(context, r)
                    yield r
            return gen()

        inner = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
        if not handler.request_streaming and not handler.response_streaming:
            async def behaviour(request, context):
                if isinstance(request, _Undecodable):
                    await refuse(context, request)
                return await inner(request, context)
            make = grpc.unary_unary_rpc_method_handler
        elif not handler.request_streaming:
            async def behaviour(request, context):
                if isinstance(request, _Undecodable):
                    await refuse(context, request)
                async for r in inner(request, context):
                    yield r
            make = grpc.unary_stream_rpc_method_handler
        elif not handler.response_streaming:
            async def behaviour(requests, context):
                return await inner(checked_stream(requests, context), context)
            make = grpc.stream_unary_rpc_method_handler
        else:
            async def behaviour(requests, context):
                async for r in inner(checked_stream(requests, context), context):
                    yield r
            make = grpc.stream_stream_rpc_method_handler
        return make(behaviour, request_deserializer=_safe(handler.request_deserializer),
                    response_serializer=handler.response_serializer)


__all__ = ["DecodeErrorInterceptor"]
