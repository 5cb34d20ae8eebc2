"""``relay call``: the terminal device, run as a process against a real ``relay serve`` process.

The far side here is the WAV file ``relay call`` writes: it is read back with the
standard library and analysed independently (level, dominant frequency).
"""

from __future__ import annotations

import json
import secrets
import wave
from pathlib import Path

import numpy as np

from tests.e2e.audio import bursts, dominant_hz
from tests.foundation.live_relay import live_relay


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16), w.getframerate()


def loud_part(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    frame = rate_hz // 50
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame).astype(np.float64)
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 300
    return frames[loud].reshape(-1)


def test_call_self_enrols_with_the_workspace_key_and_hears_the_built_in_assistant(tmp_path: Path) -> None:
    with live_relay(tmp_path) as relay:
        out = tmp_path / "heard.wav"
        res = relay.run("call", relay.url, "--workspace-key", relay.workspace_key(), "--text", "hello relay",
                        "--out", str(out))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "assistant: You said: hello relay" in res.stdout
        assert "< response.done" in res.stdout and "< output_audio_buffer.started" in res.stdout
        samples, rate = read_wav(out)
        assert rate == 24000
        assert len(loud_part(samples, rate)) >= rate // 2  # at least 0.5 s of the spoken answer
        # the fresh secret was enrolled: calling again with it works, with a wrong one it is refused (exit 1)
        client_id = res.stdout.split("for client ")[1].split()[0]
        secret = res.stderr.split("secret for client " + client_id + ": ")[1].split()[0]
        again = relay.run("call", relay.url, "--client-id", client_id, "--secret", secret, "--quiet",
                          "--out", "-")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "< " not in again.stdout and "assistant: You said: Hello from relay call." in again.stdout
        wrong = relay.run("call", relay.url, "--client-id", client_id, "--secret", secrets.token_hex(32),
                          "--out", str(tmp_path / "none.wav"))
        assert wrong.returncode == 1
        assert "401 invalid_secret" in wrong.stderr and "Traceback" not in wrong.stderr
        assert not (tmp_path / "none.wav").exists()


def test_call_sends_a_wav_with_an_admin_created_client_on_a_relay_with_another_data_dir(tmp_path: Path) -> None:
    with live_relay(tmp_path, RELAY_CONSOLE_LINK="false") as relay:
        assert relay.data_dir.name == "relay-data" and relay.data_dir.parent == tmp_path  # not ./relay-data
        made = relay.run("admin", "--json", "clients", "create", "--name", "cli-check")
        assert made.returncode == 0, made.stderr
        client_id = json.loads(made.stdout)["id"]
        tone_path = tmp_path / "tone.wav"
        pcm = bursts([(0.3, 0.8, 660.0)], total_s=1.6, rate_hz=16000)
        with wave.open(str(tone_path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(pcm.astype("<i2").tobytes())
        out = tmp_path / "echo.wav"
        secret = secrets.token_hex(32)
        res = relay.run("call", relay.url, "--client-id", client_id, "--secret", secret, "--wav", str(tone_path),
                        "--out", str(out))
        assert res.returncode == 0, res.stdout + res.stderr
        assert "you said: [" in res.stdout  # the echo assistant "transcribes" the tone burst
        samples, rate = read_wav(out)
        echo = loud_part(samples, rate)
        assert len(echo) >= rate // 2
        assert abs(dominant_hz(echo, rate) - 660.0) < 15  # the built-in echo assistant sent the tone back


def test_call_exits_1_when_no_audio_comes_back_and_2_on_bad_arguments(tmp_path: Path) -> None:
    with live_relay(tmp_path, RELAY_CONSOLE_LINK="false") as relay:
        demo = relay.run("call", relay.url, "--demo", "--out", "-")  # demo mode is off on this relay
        assert demo.returncode == 1 and "403 demo_mode_disabled" in demo.stderr
        none = relay.run("call", relay.url)
        assert none.returncode == 2 and "--client-id" in none.stderr
        (tmp_path / "notes.wav").write_text("not audio")
        bad = relay.run("call", relay.url, "--demo", "--wav", str(tmp_path / "notes.wav"))
        assert bad.returncode == 2 and "is not a WAV file" in bad.stderr and "Traceback" not in bad.stderr
    gone = relay.run("call", relay.url, "--demo", "--out", "-", "--timeout", "5")  # the server has stopped
    assert gone.returncode == 1 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr
