// The four client-side device tools of the Realtime device API, and the exact answer the API reference's snippet sends.
//
// Pure logic: `runDeviceTool(device, name, params)` changes the device state and returns the
// result object (or null for a tool this device does not own: a server-side tool, no answer).
// `toolAnswer(callId, result)` builds the two data-channel messages of the API reference.

export const CLIENT_TOOLS = Object.freeze(["adjust_device_volume", "set_device_volume", "quiet_device", "stop_audio"]);

const STEP_PERCENT = 10;

function clampPercent(value) {
  return Math.max(0, Math.min(100, Math.round(value)));
}

export class DeviceState {
  constructor(volumePercent = 50) {
    this.volumePercent = clampPercent(volumePercent);
    this.muted = false;
    this.playbackStopped = false;
  }

  adjustVolume(action) {
    if (action !== "increase" && action !== "decrease") {
      throw new RangeError(`action must be "increase" or "decrease", not ${JSON.stringify(action)}`);
    }
    const delta = action === "increase" ? STEP_PERCENT : -STEP_PERCENT;
    this.volumePercent = clampPercent(this.volumePercent + delta);
    this.muted = this.volumePercent === 0;
    return { volume_level: this.volumePercent };
  }

  setVolume(level) {
    const number = typeof level === "string" && level.trim() !== "" ? Number(level) : level;
    if (typeof number !== "number" || !Number.isFinite(number)) {
      throw new RangeError(`volume_level must be a number 0-100, not ${JSON.stringify(level)}`);
    }
    this.volumePercent = clampPercent(number);
    this.muted = this.volumePercent === 0;
    return { volume_level: this.volumePercent };
  }

  mute() {
    this.volumePercent = 0;
    this.muted = true;
    return { volume_level: 0, muted: true };
  }

  stopAudio() {
    this.playbackStopped = true;
    return { stopped: true };
  }
}

/** Run one client-side tool; returns the result object, or null when `name` is not a device tool. */
export function runDeviceTool(device, name, params) {
  switch (name) {
    case "adjust_device_volume":
      return device.adjustVolume(params.action);
    case "set_device_volume":
      return device.setVolume(params.volume_level);
    case "quiet_device":
      return device.mute();
    case "stop_audio":
      return device.stopAudio();
    default:
      return null; // server-side function, no action needed
  }
}

/** Parse a function call's `arguments` string; empty means {}. Throws SyntaxError on bad JSON. */
export function parseArguments(text) {
  if (text === undefined || text === null || text === "") return {};
  const value = JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new SyntaxError("arguments must be a JSON object");
  }
  return value;
}

/** The Realtime device API's answer: function_call_output with {success: true, ...result}, then response.create. */
export function toolAnswer(callId, result) {
  return [
    {
      type: "conversation.item.create",
      item: {
        type: "function_call_output",
        call_id: callId,
        output: JSON.stringify({ success: true, ...result }),
      },
    },
    { type: "response.create" },
  ];
}

/** The answer when the device could not run the call (bad arguments): success false and why. */
export function toolFailure(callId, message) {
  return [
    {
      type: "conversation.item.create",
      item: {
        type: "function_call_output",
        call_id: callId,
        output: JSON.stringify({ success: false, error: message }),
      },
    },
    { type: "response.create" },
  ];
}

/** The function call carried by a data-channel message, if it is the Realtime device API's `response.output_item.done`. */
export function functionCallOf(message) {
  if (message && message.type === "response.output_item.done" && message.item && message.item.type === "function_call") {
    return message.item;
  }
  return null;
}
