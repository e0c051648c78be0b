"""Drives `stagehook mcp` with the official Python MCP client (`mcp` on PyPI), as an editor's
agent would, and prints what it saw as one JSON object for tests/it/mcp.rs to check.

argv[1] is a JSON object:
  {"read_only": {"command", "args", "env"}, "writer": {...},   # two server configurations
   "wrong_token": {...}, "nothing_there": {...},   # a wrong token; no server at the URL
   "edited": <a body for edit_and_replay>, "event": "<stagehook id>", "other": "<stagehook id>",
   "provider_event": "<provider's id>"}
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError


def result(r):
    """A tool result as plain JSON: its error flag, its structured content and its text."""
    return {
        "is_error": r.is_error if hasattr(r, "is_error") else r.isError,
        "structured": getattr(r, "structured_content", None) or getattr(r, "structuredContent", None),
        "text": "".join(c.text for c in r.content if getattr(c, "type", "") == "text"),
    }


async def session_of(spec, steps):
    params = StdioServerParameters(command=spec["command"], args=spec["args"], env=spec.get("env") or None)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out = {"protocol": init.protocol_version if hasattr(init, "protocol_version") else init.protocolVersion}
            await session.send_ping()
            await steps(session, out)
            return out


async def call(session, name, arguments):
    try:
        return result(await session.call_tool(name, arguments))
    except MCPError as e:
        return {"rpc_error": {"code": e.error.code, "message": e.error.message, "data": e.error.data}}


async def main():
    spec = json.loads(sys.argv[1])

    async def read_only(session, out):
        out["tools"] = {t.name: (t.input_schema if hasattr(t, "input_schema") else t.inputSchema)
                        for t in (await session.list_tools()).tools}
        out["list_events"] = await call(session, "list_events", {"provider": "stripe", "limit": 10})
        out["get_event"] = await call(session, "get_event", {"id": spec["event"]})
        out["get_by_provider_id"] = await call(session, "get_event", {"id": spec["provider_event"]})
        out["why"] = await call(session, "why_signature_failed", {"provider": "stripe"})
        out["compare"] = await call(session, "compare_events", {"a": spec["event"], "b": spec["other"]})
        out["stats"] = await call(session, "stats_and_breakers", {})
        out["bad_arguments"] = await call(session, "list_events", {"limit": 0})
        out["replay"] = await call(session, "replay", {"id": spec["event"]})
        out["check_app"] = await call(session, "check_app", {"endpoint": "stripe"})
        resources = (await session.list_resources()).resources
        out["resources"] = {}
        for r in resources:
            read = await session.read_resource(r.uri)
            out["resources"][str(r.uri)] = "".join(getattr(c, "text", "") for c in read.contents)

    async def writer(session, out):
        out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
        out["replay"] = await call(session, "replay", {"id": spec["event"]})
        out["replay_missing"] = await call(session, "replay", {"id": "01KB0000000000000000000000"})
        out["send"] = await call(session, "send_fixture", {"provider": "stripe"})
        out["edit"] = await call(session, "edit_and_replay",
                                 {"id": spec["event"], "body": spec["edited"], "headers": {"x-debug-run": "7"}})
        out["edit_nothing"] = await call(session, "edit_and_replay", {"id": spec["event"]})
        # At a port where nothing listens, so the app's own deliveries stay as they are.
        out["check_app"] = await call(session, "check_app", {"endpoint": "stripe", "target": "http://127.0.0.1:1/hook",
                                                             "only": ["refuses_unsigned"]})
        out["last_check"] = await call(session, "last_app_check", {"endpoint": "stripe"})

    seen = {"read_only": await session_of(spec["read_only"], read_only)}
    seen["writer"] = await session_of(spec["writer"], writer)

    async def wrong_token(session, out):
        out["list_events"] = await call(session, "list_events", {})

    seen["wrong_token"] = await session_of(spec["wrong_token"], wrong_token)

    async def nothing_there(session, out):
        out["stats"] = await call(session, "stats_and_breakers", {})

    seen["nothing_there"] = await session_of(spec["nothing_there"], nothing_there)
    print(json.dumps(seen))


asyncio.run(main())
