"""The test phone and the staff console in Debian's Chromium, against the real app.

Everything is real: the web app under uvicorn, login, the Bot (Silero VAD, Whisper base,
pyttsx3 voice for speed, as in test_call.py), the Switchboard, the EventBus behind the
masking sink, the StaffConsole, and Chromium's WebRTC stack. Chromium's microphone is a
WAV file (``--use-file-for-fake-audio-capture``): the caller's file holds recorded
questions from tests/data/audio/dev; the staff member's holds a 1 kHz tone, so that
what the caller hears from staff can be told apart from the bot and the ringback.

The caller and staff browsers are two Chromium processes because the fake microphone
file is a launch option.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import shutil
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, login, make_services, running_app, screenshot
from conftest import DATA

from dashboards.event_bus import EventBus
from privacy.masking import MaskingSink
from telephony.config import TelephonySettings
from telephony.staff_console import StaffConsole
from voicebot import prompts
from voicebot.bot import Bot
from voicebot.config import Settings
from voicebot.events import EventFanout, EventRecorder
from voicebot.resample import resample
from voicebot.switchboard import Switchboard
from voicebot.wavfile import read_wav, write_wav

FIXTURES = DATA / "audio" / "dev"
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # staff at work
RATE = 48000
SHOTS = Path("/tmp/shots/webrtc")  # copies for people to look at

# Records every RTCPeerConnection a page makes, so the test can read its statistics.
PC_SPY = """
window.__pcs = [];
const NativePC = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  const pc = new NativePC(...args);
  window.__pcs.push(pc);
  return pc;
};
window.RTCPeerConnection.prototype = NativePC.prototype;
"""

INBOUND_ENERGY = """async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  if (!pc) return 0;
  let energy = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") energy = s.totalAudioEnergy || 0;
  });
  return energy;
}"""

# The strongest frequency of what the page's <audio> element plays, over ``ms``.
PEAK_FREQUENCY = """async (ms) => {
  const audio = document.querySelector("audio");
  if (!audio || !audio.srcObject) return null;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
  await new Promise((r) => setTimeout(r, ms));
  const data = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(data);
  let best = 2;
  for (let i = 2; i < data.length; i++) if (data[i] > data[best]) best = i;
  const result = { freq: best * ctx.sampleRate / analyser.fftSize, db: data[best] };
  await ctx.close();
  return result;
}"""


def shot(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in the test's tmp dir, also copied to ``SHOTS``."""
    path = screenshot(page, tmp_path, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SHOTS / path.name)
    return path


def clip(utterance: str) -> np.ndarray:
    with (FIXTURES / "manifest.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    row = next(r for r in rows if r["utterance"] == utterance and r["voice"] == "jf_alpha")
    audio = read_wav(FIXTURES / row["file"])
    return resample(audio.samples, audio.sample_rate, RATE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def caller_wav(path: Path, *parts: str | float) -> str:
    """Chromium's fake microphone wants 16-bit PCM; the fixtures are 8 kHz μ-law."""
    pieces = [silence(p) if isinstance(p, float | int) else clip(p) for p in parts]
    write_wav(path, np.concatenate(pieces), RATE)
    return str(path)


def tone_wav(path: Path, freq: float, seconds: float = 10.0) -> str:
    t = np.arange(int(seconds * RATE)) / RATE
    write_wav(path, np.rint(6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), RATE)
    return str(path)


@pytest.fixture(scope="module")
def bot(tmp_path_factory) -> Bot:
    settings = Settings()
    settings.tts.engine = "pyttsx3"
    settings.tts.cache_dir = tmp_path_factory.mktemp("speech-cache")
    bot = Bot(settings)
    asyncio.run(bot.prepare(rates=(16000,)))
    return bot


def services_for(tmp_path: Path, bot: Bot, ring_timeout_s: float = 60.0):
    bus = EventBus()
    recorder = EventRecorder()
    telephony = TelephonySettings()
    telephony.transfer.targets = ["console"]
    telephony.transfer.ring_timeout_s = ring_timeout_s
    telephony.webrtc.ice_servers = []
    switchboard = Switchboard(bot, EventFanout(MaskingSink(bus), recorder), now=lambda: OPEN)
    services = make_services(
        tmp_path, bus=bus, switchboard=switchboard, staff_console=StaffConsole(telephony, bus)
    )
    services.telephony = telephony
    return services, recorder


def launch_with_mic(playwright, wav: str):
    """Chromium whose microphone plays ``wav`` in a loop (once if it ends in %noloop)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )


@contextlib.contextmanager
def chromium_with_mic(*wavs: str):
    """One Chromium per microphone file (the file is a launch option)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browsers = [launch_with_mic(p, wav) for wav in wavs]
        try:
            yield browsers[0] if len(browsers) == 1 else browsers
        finally:
            for browser in browsers:
                browser.close()


def open_page(browser, app, role: str, path: str):
    context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
    context.add_init_script(PC_SPY)
    outside: list[str] = []

    def only_local(route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.outside_requests = outside
    login(page, app, role, path)
    page.goto(app.url + path)
    return page


def wait_until(predicate, timeout: float = 60.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the timeout")
        time.sleep(step)


def test_phone_call_shows_the_answer_live(tmp_path, bot, faq):
    # The file loops: if call set-up on a loaded machine outlasts the first question (audio
    # before the page is ready is nobody's), the caller simply asks again.
    wav = caller_wav(tmp_path / "caller.wav", 3.0, "納付書を再発行してもらえますか", 12.0)
    services, recorder = services_for(tmp_path, bot)
    with running_app(tmp_path, services) as app, chromium_with_mic(wav) as browser:
        page = open_page(browser, app, "operator", "/phone")
        assert page.locator("h1").inner_text() == "テスト電話"
        shot(page, tmp_path, "phone-idle")
        page.click("#call-button")
        page.wait_for_selector("#call-state[data-state=active]", timeout=30_000)
        # The greeting, then the caller's question, then the FAQ answer, as they happen.
        page.wait_for_selector(".line-bot", timeout=30_000)
        page.wait_for_selector(".line-caller", timeout=90_000)
        answer = faq.answer_text("payment.lost-notice")
        page.wait_for_function(
            "t => Array.from(document.querySelectorAll('.line-bot .text'))"
            ".some(e => e.textContent.startsWith(t))",
            arg=answer[:20],
            timeout=90_000,
        )
        # The caller's lines are what the recogniser heard (wrong kanji and all: 納付書 may
        # come out as 納不称), as the call's own events recorded it.
        caller_lines = page.locator(".line-caller .text").all_inner_texts()
        heard = [e.text for e in recorder.events if e.name == "recognized" and e.final and e.text]
        assert caller_lines and set(caller_lines) <= set(heard), (caller_lines, heard)
        # The bot's voice really reached the browser (energy of the received audio).
        assert page.evaluate(INBOUND_ENERGY) > 0.01
        shot(page, tmp_path, "phone-answered")

        call_id = page.locator("#phone").get_attribute("data-call-id")
        # Hang up a few seconds into the answer: a caller who leaves in its first
        # seconds did not hear it, and is recorded as hung_up_waiting.
        page.wait_for_timeout(4000)
        page.click("#hangup-button")
        page.wait_for_selector("#call-state:has-text('通話を終了しました')")
        shot(page, tmp_path, "phone-ended")
        wait_until(lambda: not services.webrtc.calls)
        ended = wait_until(
            lambda: [e for e in recorder.events if e.name == "call_ended"], timeout=15
        )
        assert ended[0].call_id == call_id
        assert ended[0].outcome == "hung_up"
        decided = [e.faq_id for e in recorder.events if e.name == "intent_decided"]
        assert "payment.lost-notice" in decided, decided
        assert page.outside_requests == []


def test_staff_answers_a_transferred_call(tmp_path, bot):
    # Looped by Chromium: the request for staff, then quiet while the bot answers, as a
    # caller would be; once connected, staff hear the caller repeat the request.
    caller_file = caller_wav(tmp_path / "caller.wav", 2.0, "担当の方と直接話したいです", 12.0)
    staff_file = tone_wav(tmp_path / "staff.wav", 1000.0)
    services, recorder = services_for(tmp_path, bot)
    with (
        running_app(tmp_path, services) as app,
        chromium_with_mic(staff_file, caller_file) as (staff_browser, caller_browser),
    ):
        staff = open_page(staff_browser, app, "staff", "/staff")
        staff.wait_for_selector("#console-status[data-state=live]")
        shot(staff, tmp_path, "staff-idle")

        caller = open_page(caller_browser, app, "operator", "/phone")
        caller.click("#call-button")
        caller.wait_for_selector("#call-state[data-state=active]", timeout=30_000)

        # The call rings on the console with the screen pop.
        try:
            staff.wait_for_selector(".console-call[data-state=ringing]", timeout=90_000)
        except Exception as exc:
            lines = caller.locator("#transcript li").all_inner_texts()
            events = [
                (e.name, getattr(e, "text", None) or getattr(e, "action", None))
                for e in recorder.events
            ]
            raise AssertionError(f"no ringing call; transcript: {lines}; events: {events}") from exc
        card = staff.locator(".console-call").first
        assert "お客様が担当者との通話を希望されました" in card.locator(".reason").inner_text()
        assert card.locator(".turns tbody tr").count() >= 1
        assert staff.title().startswith("【着信 1件】")  # seen from a background tab too
        shot(staff, tmp_path, "staff-ringing")
        caller.wait_for_selector(".line-note:has-text('担当者を呼び出しています')")

        staff.click(".answer-button")
        staff.wait_for_selector(".console-call[data-state=connected]", timeout=30_000)
        staff.wait_for_selector(".hangup-button")
        assert not staff.title().startswith("【着信")
        caller.wait_for_selector("#call-state[data-state=staff]", timeout=30_000)

        # Staff's 1 kHz tone reaches the caller ...
        def caller_hears_staff():
            peak = caller.evaluate(PEAK_FREQUENCY, 500)
            return peak if peak and abs(peak["freq"] - 1000) < 30 and peak["db"] > -60 else None

        wait_until(caller_hears_staff, timeout=30)
        # ... and the caller's voice reaches staff.
        start = staff.evaluate(INBOUND_ENERGY)
        wait_until(lambda: staff.evaluate(INBOUND_ENERGY) - start > 0.002, timeout=40)
        shot(staff, tmp_path, "staff-connected")
        shot(caller, tmp_path, "phone-with-staff")

        # 終話 ends both sides.
        staff.click(".hangup-button")
        caller.wait_for_selector("#call-state:has-text('通話が終了しました')", timeout=15_000)
        staff.wait_for_selector("#history li:has-text('通話が終了しました')", timeout=15_000)
        shot(staff, tmp_path, "staff-ended")
        assert staff.locator(".console-call").count() == 0
        names = [e.name for e in recorder.events]
        assert "transfer_answered" in names
        assert [e.outcome for e in recorder.events if e.name == "call_ended"] == ["transferred"]
        assert services.staff_console.calls() == []
        assert staff.outside_requests == [] and caller.outside_requests == []


def test_nobody_answers_and_the_caller_hears_the_apology(tmp_path, bot):
    wav = caller_wav(tmp_path / "caller.wav", 30.0)
    services, recorder = services_for(tmp_path, bot, ring_timeout_s=2.0)
    with (
        running_app(tmp_path, services) as app,
        chromium_with_mic(wav) as browser,
    ):
        staff = open_page(browser, app, "staff", "/staff")  # open, but nobody answers
        staff.wait_for_selector("#console-status[data-state=live]")
        caller = open_page(browser, app, "operator", "/phone")
        caller.click("#call-button")
        caller.wait_for_selector(".line-bot", timeout=30_000)  # the greeting
        caller.click("#keypad button[data-digit='0']")
        caller.wait_for_selector(
            ".line-note:has-text('担当者につながりませんでした')", timeout=30_000
        )
        apology = prompts.TRANSFER_FAILED.split("。")[0]
        caller.wait_for_selector(f".line-bot .text:has-text('{apology}')", timeout=30_000)
        staff.wait_for_selector("#history li:has-text('応答がなく')", timeout=15_000)
        shot(caller, tmp_path, "phone-transfer-failed")
        names = [e.name for e in recorder.events]
        assert names.index("transfer_requested") < names.index("transfer_failed")
        failed = next(e for e in recorder.events if e.name == "transfer_failed")
        assert failed.reason == "no staff answered"
        # The bot kept the caller: the line is still up.
        assert caller.locator("#call-state").get_attribute("data-state") == "active"
        caller.click("#hangup-button")


def test_signalling_errors_and_roles(tmp_path, bot):
    services, _ = services_for(tmp_path, bot)
    wav = caller_wav(tmp_path / "caller.wav", 1.0)
    fetch = """async ([url, body]) => {
      const csrf = document.querySelector('meta[name="csrf-token"]').content;
      const r = await fetch(url, {method: body === null ? "GET" : "POST",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: body === null ? undefined : JSON.stringify(body)});
      let detail = null;
      try { detail = (await r.json()).detail; } catch (e) {}
      return [r.status, detail];
    }"""
    with running_app(tmp_path, services) as app, chromium_with_mic(wav) as browser:
        operator = open_page(browser, app, "operator", "/phone")
        status, detail = operator.evaluate(fetch, ["/api/phone/offer", {"sdp": "nonsense"}])
        assert status == 400 and "SDP" in detail
        status, _ = operator.evaluate(fetch, ["/api/phone/offer", {"sdp": ""}])
        assert status == 422
        status, _ = operator.evaluate(fetch, ["/api/phone/nope/hangup", {}])
        assert status == 404
        status, _ = operator.evaluate(fetch, ["/api/staff/calls", None])
        assert status == 403  # operators use the phone, not the console
        viewer = open_page(browser, app, "viewer", "/")
        status, _ = viewer.evaluate(fetch, ["/api/phone/offer", {"sdp": "v=0"}])
        assert status == 403
        staff = open_page(browser, app, "staff", "/staff")
        status, _ = staff.evaluate(fetch, ["/api/phone/offer", {"sdp": "v=0"}])
        assert status == 403  # the test phone is the operators' tool
        status, _ = staff.evaluate(fetch, ["/api/staff/calls", None])
        assert status == 200
        status, detail = staff.evaluate(
            fetch, ["/api/staff/calls/nope/answer", {"sdp": "v=0", "type": "offer"}]
        )
        assert status == 404 and "終了" in detail
        anonymous = browser.new_page()
        anonymous.goto(app.url + "/phone")
        assert "/login" in anonymous.url
