"""CallCore tool routing: client-side tools to the device, server-side tools to RunServerTool."""

from __future__ import annotations

import orjson
from bridge_helpers import Harness, device_events, types, upstream_events

from relay.bridge import RunServerTool


def fc_item(name: str, call_id: str, args: str = "{}") -> dict:
    return {"id": f"item_{call_id}", "type": "function_call", "call_id": call_id, "name": name, "arguments": args}


def test_client_tool_goes_to_device_in_seed_shape(harness: Harness) -> None:
    h = harness
    out = h.up({"type": "response.output_item.done", "response_id": "r1", "output_index": 0,
                "item": fc_item("set_device_volume", "call_1", '{"volume_level": 30}')})
    [ev] = device_events(out)
    assert ev["type"] == "response.output_item.done"
    assert ev["item"] == {"id": "item_call_1", "type": "function_call", "call_id": "call_1",
                          "name": "set_device_volume", "arguments": '{"volume_level": 30}'}
    assert not any(isinstance(a, RunServerTool) for a in out)
    # the device answers; both go upstream as they are
    out = h.dev({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_1",
                                                              "output": '{"success": true}'}})
    out += h.dev({"type": "response.create"})
    assert types(upstream_events(out)) == ["conversation.item.create", "response.create"]
    assert upstream_events(out)[0]["item"]["output"] == '{"success": true}'


def test_server_tool_runs_once_and_result_goes_upstream(harness: Harness) -> None:
    h = harness
    h.up({"type": "response.created", "response": {"id": "r1"}})
    out = h.up({"type": "response.function_call_arguments.done", "response_id": "r1", "item_id": "item_c2",
                "call_id": "c2", "name": "lookup_order", "arguments": '{"id": "42"}'})
    out += h.up({"type": "response.output_item.done", "item": fc_item("lookup_order", "c2", '{"id": "42"}')})
    out += h.up({"type": "response.done", "response": {"id": "r1", "status": "completed",
                                                       "output": [fc_item("lookup_order", "c2")]}})
    runs = [a for a in out if isinstance(a, RunServerTool)]
    assert runs == [RunServerTool("c2", "lookup_order", '{"id": "42"}', "http://127.0.0.1:9/hook")]
    h.core.on_tool_result("c2", '{"status": "shipped"}', 1.0)
    ups = upstream_events(h.drain())
    assert types(ups) == ["conversation.item.create", "response.create"]
    assert ups[0]["item"] == {"type": "function_call_output", "call_id": "c2", "output": '{"status": "shipped"}'}
    # a duplicate or unknown result is ignored
    h.core.on_tool_result("c2", "{}", 1.1)
    h.core.on_tool_result("nope", "{}", 1.1)
    assert h.drain() == []


def test_tool_result_waits_for_active_response(harness: Harness) -> None:
    h = harness
    h.up({"type": "response.output_item.done", "item": fc_item("lookup_order", "c3")})
    h.up({"type": "response.created", "response": {"id": "r2"}})  # e.g. the user spoke meanwhile
    h.core.on_tool_result("c3", '{"ok": 1}', 2.0)
    assert types(upstream_events(h.drain())) == ["conversation.item.create"]
    out = h.up({"type": "response.done", "response": {"id": "r2", "status": "completed"}})
    assert types(upstream_events(out)) == ["response.create"]


def test_barge_in_during_server_tool_call(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 200))
    h.tick(4)
    h.up({"type": "response.output_item.done", "item": fc_item("lookup_order", "c4")})
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 10, "item_id": "u"})
    assert [e["audio_end_ms"] for e in upstream_events(out)] == [80]
    h.up({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}})
    h.core.on_tool_result("c4", '{"ok": true}', 3.0)
    assert types(upstream_events(h.drain())) == ["conversation.item.create", "response.create"]
    # the answer to the tool result is heard
    h.start_response("r2", "i2")
    h.up(h.audio("i2", "r2", 40))
    assert all(f is not None for f in h.tick(2))


def test_barge_in_during_client_tool_call(harness: Harness) -> None:
    h = harness
    h.up({"type": "response.output_item.done", "item": fc_item("stop_audio", "c5")})
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 10, "item_id": "u"})
    assert upstream_events(out) == []
    out = h.dev({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c5",
                                                              "output": "{}"}})
    assert types(upstream_events(out)) == ["conversation.item.create"]


def test_non_string_arguments_serialized(harness: Harness) -> None:
    out = harness.up({"type": "response.output_item.done", "item": {**fc_item("lookup_order", "c6"),
                                                                     "arguments": {"id": 1}}})
    [run] = [a for a in out if isinstance(a, RunServerTool)]
    assert orjson.loads(run.arguments) == {"id": 1}
