"""voicelane studio in a real browser (system Chromium + chromedriver via selenium) against a real
``voicelane serve`` child: record with Chromium's fake microphone, check the data, train a tiny
voice from the page, listen to a served voice, and bad input. Screenshots go to docs/img/.

Skipped (with the reason) only where Chromium, chromedriver or selenium are not installed;
``.ci/run`` installs them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import CORPORA, REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium / chromedriver not installed (apt-get install chromium chromium-driver)",
)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

# screenshots: docs/img/ when VOICELANE_STUDIO_SCREENSHOTS=docs (how docs/studio.md's images are made),
# else a temp folder, so a test run leaves the checkout clean
IMG = (
    REPO / "docs" / "img"
    if os.environ.get("VOICELANE_STUDIO_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "voicelane-studio-shots"
)
TAKE_S = 2.2


def _wav48k(src: Path, dest: Path, silent: bool = False) -> Path:
    import soxr

    audio, rate = sf.read(str(src), dtype="float32")
    audio = soxr.resample(audio, rate, 48000)
    if silent:
        audio = np.zeros_like(audio)
    sf.write(str(dest), audio, 48000, subtype="PCM_16")
    return dest


def _driver(fake_wav: Path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--no-first-run",
    ):
        opts.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_script_timeout(60)
    return drv


@pytest.fixture(scope="module")
def studio(svc_start_server, svc_kal_corpus, tmp_path_factory):
    """One service for the module; voices appear under ``<work>/served`` (see test_voices...)."""
    work = tmp_path_factory.mktemp("studio")
    roots = f"{svc_kal_corpus.parent}:{work / 'var'}"
    (work / "served").mkdir()
    srv = svc_start_server(
        work,
        VOICELANE_DATA_ROOTS=roots,
        VOICELANE_BUNDLE_ROOTS=str(work / "served"),
        VOICELANE_REPORTS_DIR=str(work / "reports"),
    )
    assert srv.token, "the service made no per-install token"
    return srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    wav = _wav48k(CORPORA / "kal" / "wavs" / "kal_0001.flac", tmp_path_factory.mktemp("fake") / "mic.wav")
    drv = _driver(wav)
    yield drv
    drv.quit()


def _open(drv, srv, page: str) -> None:
    drv.get(f"{srv.url}/studio?token={srv.token}#{page}")
    _wait(drv, lambda d: d.execute_script("return document.body.dataset.page") == page, 20)


def _wait(drv, cond, timeout: float = 30, what: str = ""):
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.2).until(cond)
    except Exception as exc:  # noqa: BLE001 - any wait failure becomes the assertion, with the browser log
        logs = drv.get_log("browser") if hasattr(drv, "get_log") else []
        raise AssertionError(f"timed out waiting for {what}: {exc!r}\nbrowser log: {logs[-10:]}") from None


def _text(drv, el_id: str) -> str:
    return drv.find_element(By.ID, el_id).text


def _shot(drv, name: str) -> None:
    """A screenshot of the whole page (the window grows to the page's height, then shrinks back)."""
    IMG.mkdir(parents=True, exist_ok=True)
    height = drv.execute_script("return document.documentElement.scrollHeight")
    drv.set_window_size(1280, min(max(height + 140, 600), 2400))
    drv.save_screenshot(str(IMG / f"studio-{name}.png"))
    drv.set_window_size(1280, 1000)


def _record_one(drv, expect: str) -> None:
    drv.find_element(By.ID, "rec-start").click()
    _wait(drv, lambda d: d.find_element(By.ID, "rec-stop").is_enabled(), 10, "recording to start")
    time.sleep(TAKE_S)
    drv.find_element(By.ID, "rec-stop").click()
    _wait(
        drv,
        lambda d: expect in _text(d, "rec-status") or "Not saved" in _text(d, "rec-status"),
        30,
        f"status {expect!r}",
    )


def _fill(drv, values: tuple[tuple[str, str], ...]) -> None:
    for el_id, value in values:
        box = drv.find_element(By.ID, el_id)
        box.clear()
        box.send_keys(value)


def _open_session(drv, name: str, speaker: str) -> None:
    _fill(drv, (("rec-name", name), ("rec-speaker", speaker)))
    drv.find_element(By.ID, "rec-open-btn").click()
    _wait(drv, lambda d: d.find_element(By.ID, "rec-session").is_displayed(), 20, "the session")


def _choose_when_listed(drv, select_id: str, value: str, what: str) -> None:
    """Wait until the page has listed ``value`` in the <select>, then choose it."""
    _wait(
        drv,
        lambda d: any(
            o.get_attribute("value") == value for o in d.find_elements(By.CSS_SELECTOR, f"#{select_id} option")
        ),
        20,
        what,
    )
    Select(drv.find_element(By.ID, select_id)).select_by_value(value)


def _upload_zip(drv, path: Path, name: str) -> None:
    drv.find_element(By.ID, "data-zip").send_keys(str(path))
    _fill(drv, (("data-zip-name", name),))
    drv.find_element(By.ID, "data-upload-btn").click()


def _check_dataset(drv) -> None:
    """Run the Data page's check on the chosen dataset and wait for its result (or its error)."""
    drv.find_element(By.ID, "data-check").click()
    _wait(drv, lambda d: "Checked:" in _text(d, "data-status") or _text(d, "data-error"), 120, "the check job")


def _train_form(drv, srv, corpus: Path, preset: str) -> None:
    """Open the train page once the corpus is listed, and choose it, the lane and the preset."""
    _open(drv, srv, "train")
    _choose_when_listed(drv, "train-data", str(corpus), "datasets")
    Select(drv.find_element(By.ID, "train-lane")).select_by_value("tts_voice_train")
    Select(drv.find_element(By.ID, "train-preset")).select_by_value(preset)


def test_record_consent_and_prompts_then_check(studio, browser):
    drv = browser
    _open(drv, studio, "record")
    _open_session(drv, "rec_one", "Test Speaker")
    assert "consent" in _text(drv, "rec-step-title").lower()
    _record_one(drv, "Consent saved")
    assert "Consent saved" in _text(drv, "rec-status"), _text(drv, "rec-warning")
    for i in range(1, 6):
        _record_one(drv, f"Saved en_{i:04d}")
        assert f"Saved en_{i:04d}" in _text(drv, "rec-status"), _text(drv, "rec-warning")
    # re-take the last prompt: it replaces the take, the row count stays 5
    drv.find_element(By.ID, "rec-retake").click()
    assert "en_0005" in _text(drv, "rec-step-title")
    _record_one(drv, "Saved en_0005")
    assert "5 takes so far" in _text(drv, "rec-status")
    loudest = float(drv.find_element(By.ID, "rec-level").get_attribute("data-max"))
    assert loudest > 0.05, "the level meter never moved"
    _shot(drv, "record")
    # resume later: reopening the session continues after the recorded prompts; skip moves on
    _open(drv, studio, "record")
    _open_session(drv, "rec_one", "Test Speaker")
    assert "Prompt 6 of" in _text(drv, "rec-step-title") and "resuming: 5 takes" in _text(drv, "rec-where")
    drv.find_element(By.ID, "rec-skip").click()
    assert "Prompt 7 of" in _text(drv, "rec-step-title")

    folder = Path(studio.workdir) / "var" / "datasets" / "rec_one"
    rows = (folder / "metadata.csv").read_text("utf-8").splitlines()
    assert [r.split("|")[0] for r in rows] == [f"en_{i:04d}" for i in range(1, 6)]
    assert sorted(p.name for p in (folder / "wavs").iterdir()) == [f"en_{i:04d}.wav" for i in range(1, 6)]
    consent = (folder / "consent.txt").read_text("utf-8")
    assert "speaker_name: Test Speaker" in consent and "audio_sha256:" in consent
    info = sf.info(str(folder / "wavs" / "en_0001.wav"))
    assert info.samplerate >= 16000 and TAKE_S - 0.5 < info.duration < 20  # real time: later under load
    res = subprocess.run(
        [sys.executable, "-m", "voicelane", "dataset", "check", str(folder), "--json", "--min-minutes", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["totals"]["kept"] == 5, report["rejected"]

    # the Data page runs the same check through the API and plays a clip
    _open(drv, studio, "data")
    _choose_when_listed(drv, "data-select", str(folder), "dataset list")
    _check_dataset(drv)
    assert "5 kept, 0 rejected" in _text(drv, "data-status"), _text(drv, "data-error")
    drv.find_element(By.CSS_SELECTOR, "#data-kept tr[data-clip='en_0001'] button").click()
    _wait(
        drv,
        lambda d: d.execute_script("const a=document.getElementById('data-audio');return a.currentTime > 0 || a.ended"),
        20,
        "the clip to play",
    )
    _shot(drv, "data")


def test_bad_input_messages_and_nothing_outside_the_root(studio, browser, tmp_path):
    drv = browser
    _open(drv, studio, "data")
    var = Path(studio.workdir) / "var"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("metadata.csv", "a|hello\n")
        zf.writestr("../escaped.txt", "should never be written")
        zf.writestr("wavs/a.wav", b"RIFF")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    for path, name, code in ((evil, "evil_set", "upload_unsafe"), (empty, "empty_set", "upload_empty")):
        _upload_zip(drv, path, name)
        _wait(drv, lambda d: code in _text(d, "data-error"), 20, code)
        assert "Upload refused" in _text(drv, "data-error")
        assert not (var / "datasets" / name).exists()
    assert not list(Path(studio.workdir).rglob("escaped.txt"))
    assert not (var / "escaped.txt").exists() and not (var.parent / "escaped.txt").exists()
    _shot(drv, "data-refused")

    # a good zip is unpacked under the data root and listed
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        src = CORPORA / "kal"
        rows = (src / "metadata.csv").read_text("utf-8").splitlines()[:2]
        zf.writestr("kal2/metadata.csv", "\n".join(rows) + "\n")
        for row in rows:
            cid = row.split("|")[0]
            zf.write(src / "wavs" / f"{cid}.flac", f"kal2/wavs/{cid}.flac")
    _upload_zip(drv, good, "kal_two")
    _wait(drv, lambda d: "Unpacked 3 files" in _text(d, "data-status") or _text(d, "data-error"), 20, "unpack")
    assert (var / "datasets" / "kal_two" / "metadata.csv").is_file(), _text(drv, "data-error")
    # check it and show one clip's alignment (phones over the waveform)
    _check_dataset(drv)
    assert "2 kept" in _text(drv, "data-status"), _text(drv, "data-error")
    drv.find_element(By.CSS_SELECTOR, "#data-kept tr[data-clip='kal_0001'] button.align").click()
    _wait(
        drv,
        lambda d: d.find_element(By.ID, "data-align").get_attribute("data-state") in ("done", "error"),
        60,
        "the alignment",
    )
    assert drv.find_element(By.ID, "data-align").get_attribute("data-state") == "done", _text(drv, "data-align-info")
    assert int(drv.find_element(By.ID, "data-align").get_attribute("data-phones")) > 20
    assert "hill" in _text(drv, "data-align-words")
    _shot(drv, "data-alignment")


def test_silent_recording_is_refused(studio, tmp_path):
    wav = _wav48k(CORPORA / "kal" / "wavs" / "kal_0001.flac", tmp_path / "silence.wav", silent=True)
    drv = _driver(wav)
    try:
        # a fresh browser without the token: the page asks for it, and works once it is pasted
        drv.get(f"{studio.url}/studio#data")
        _wait(drv, lambda d: d.find_element(By.ID, "auth").is_displayed(), 20, "the token prompt")
        assert "unauthorized" in _text(drv, "data-error")
        drv.find_element(By.ID, "auth-token").send_keys(studio.token)
        drv.find_element(By.ID, "auth-save").click()
        _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "#data-select option"), 20, "the dataset list")
        assert not drv.find_element(By.ID, "auth").is_displayed() and not _text(drv, "data-error")
        drv.get(f"{studio.url}/studio#record")
        _wait(drv, lambda d: d.execute_script("return document.body.dataset.page") == "record", 20, "record")
        _open_session(drv, "rec_silent", "Quiet Speaker")
        _record_one(drv, "Consent saved")
        warning = _text(drv, "rec-warning")
        assert "recording_silent" in warning and "silent" in warning.lower(), warning
        assert "Not saved" in _text(drv, "rec-status")
        assert "consent" in _text(drv, "rec-step-title").lower()  # still on the consent step
        folder = Path(studio.workdir) / "var" / "datasets" / "rec_silent"
        assert not (folder / "consent.wav").exists() and not (folder / "consent.txt").exists()
        _shot(drv, "record-silent")
    finally:
        drv.quit()


def test_train_tiny_from_the_page(studio, browser, svc_kal_corpus):
    drv = browser
    _train_form(drv, studio, svc_kal_corpus, "tiny")
    Select(drv.find_element(By.ID, "train-base")).select_by_value("coqui-xtts-v2")
    assert "NONCOMMERCIAL" in _text(drv, "train-base-verdict")
    Select(drv.find_element(By.ID, "train-base")).select_by_value("")
    _fill(
        drv,
        (("train-profile", "studio_tiny"), ("train-minmin", "0"), ("train-steps", "20"), ("train-snap", "10")),
    )
    drv.find_element(By.ID, "train-select").click()
    drv.find_element(By.ID, "train-start").click()
    _wait(drv, lambda d: d.find_element(By.ID, "train-watch").get_attribute("data-job-id"), 20, "the job")
    ended = ("done", "error", "cancelled")
    _wait(
        drv,
        lambda d: (
            int(d.find_element(By.ID, "train-loss").get_attribute("data-points") or 0) > 0
            or d.find_element(By.ID, "train-watch").get_attribute("data-state") in ended
        ),
        300,
        "a loss point",
    )
    _shot(drv, "train")
    _wait(
        drv, lambda d: d.find_element(By.ID, "train-watch").get_attribute("data-state") in ended, 400, "the job to end"
    )
    assert drv.find_element(By.ID, "train-watch").get_attribute("data-state") == "done", _text(drv, "train-log")
    assert drv.execute_script("return document.getElementById('train-progress').value") == 1
    assert int(drv.find_element(By.ID, "train-loss").get_attribute("data-points")) >= 2  # steps 10 and 20
    assert drv.find_elements(By.CSS_SELECTOR, "#train-loss canvas"), "uPlot drew no chart"
    _wait(
        drv,
        lambda d: int(d.find_element(By.ID, "train-wer").get_attribute("data-points") or 0) >= 2,
        20,
        "the snapshot WER curve",
    )  # snapshots at steps 10 and 20, each scored on the regression prompts
    assert "kept step" in _text(drv, "train-wer-text")
    drv.find_element(By.ID, "jobs-refresh").click()
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-state='done']"), 10, "jobs list")
    Select(drv.find_element(By.ID, "jobs-filter")).select_by_value("error")
    _wait(drv, lambda d: not d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-state='done']"), 10, "filter")
    _shot(drv, "train-done")


def test_voices_speak_plays_audio(studio, browser, svc_prod_bundle):
    drv = browser
    dest = Path(studio.workdir) / "served" / "bundles" / svc_prod_bundle.profile / "voice_bundle"
    shutil.copytree(svc_prod_bundle.bundle_dir, dest)
    assert studio.client.post("/api/voice/reload").status_code == 200
    _open(drv, studio, "voices")
    _wait(
        drv,
        lambda d: d.find_elements(By.CSS_SELECTOR, f"article[data-profile='{svc_prod_bundle.profile}']"),
        30,
        "the served voice",
    )
    card = drv.find_element(By.CSS_SELECTOR, f"article[data-profile='{svc_prod_bundle.profile}']").text
    assert "WER" in card and "consent recorded" in card and "verify certificate" in card
    text = (
        "The studio speaks these sentences with a voice trained by the lane. A producer types the text, "
        "presses the button, and hears the result at once. Nothing leaves this machine."
    )
    _fill(drv, (("speak-text", text),))
    Select(drv.find_element(By.ID, "speak-voice-b")).select_by_value(svc_prod_bundle.profile)  # A/B
    drv.find_element(By.ID, "speak-btn").click()
    _wait(
        drv,
        lambda d: d.execute_script(
            "const a=document.getElementById('speak-audio');return a.duration > 0 && (a.currentTime > 0 || a.ended)"
        ),
        60,
        "the audio to play",
    )
    duration = drv.execute_script("return document.getElementById('speak-audio').duration")
    assert duration > 0.5
    _wait(
        drv, lambda d: d.execute_script("return document.getElementById('speak-audio-b').duration > 0.5"), 30, "voice B"
    )
    ready = drv.find_element(By.CSS_SELECTOR, f"article[data-profile='{svc_prod_bundle.profile}'] dd.readiness")
    _wait(drv, lambda d: "not assessed" in ready.text, 20, "the readiness verdict (no readiness.json yet)")
    # A/B: the speaker's real held-out recording beside this voice, for the same sentence
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "#heldout-clip option"), 20, "the held-out sentences")
    drv.find_element(By.ID, "heldout-btn").click()
    # (the real take is a few seconds; the 2-step tiny voice says the sentence much faster)
    both = (
        "const d = (i) => document.getElementById(i).duration; return d('heldout-real') > 0.5 && d('heldout-voice') > 0"
    )
    _wait(drv, lambda d: d.execute_script(both), 60, "the real recording and this voice")
    _shot(drv, "voices")
    # the bundle download is the served bundle, zipped
    res = studio.client.get(f"/api/voice/profiles/{svc_prod_bundle.profile}/bundle")
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(res.content)).namelist()
    assert f"{svc_prod_bundle.profile}/voice_bundle/manifest.json" in names


def test_docs_page_renders_offline(studio, browser):
    drv = browser
    html = studio.client.get("/docs").text
    assert "cdn." not in html and "/studio/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    drv.get(f"{studio.url}/docs")
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"), 30, "Swagger UI")
    assert "voicelane service" in drv.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    assert drv.find_elements(By.CSS_SELECTOR, ".opblock-tag[data-tag='data']")
    foreign = (
        "return performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(arguments[0]))"
    )
    assert drv.execute_script(foreign, studio.url) == []  # nothing fetched from anywhere else
    _open(drv, studio, "train")
    time.sleep(0.5)
    assert drv.execute_script(foreign, studio.url) == []


def test_keyboard_and_200_percent_zoom(studio, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    drv = browser
    _open(drv, studio, "record")
    for _ in range(12):  # the page tabs are reachable and usable from the keyboard
        ActionChains(drv).send_keys(Keys.TAB).perform()
        if drv.switch_to.active_element.get_attribute("id") == "tab-data":
            break
    assert drv.switch_to.active_element.get_attribute("id") == "tab-data"
    ActionChains(drv).send_keys(Keys.ENTER).perform()
    _wait(drv, lambda d: d.execute_script("return document.body.dataset.page") == "data", 10, "keyboard navigation")
    unlabelled = drv.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')].filter(e => e.type !== 'hidden' &&"
        " !document.querySelector(`label[for='${e.id}']`) && !e.getAttribute('aria-label')).map(e => e.id)"
    )
    assert unlabelled == []
    # 200 % zoom of a 1280 px window: a 640 CSS px viewport at device scale 2; no page scrolls sideways
    drv.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 640, "height": 1000, "deviceScaleFactor": 2, "mobile": False}
    )
    try:
        for page in ("record", "data", "train", "voices"):
            drv.get(f"{studio.url}/studio#{page}")
            _wait(drv, lambda d: d.execute_script("return document.body.dataset.page") == page, 20, page)
            time.sleep(0.3)
            over = drv.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert over <= 1, f"{page} scrolls sideways by {over} px at 200 %"
        IMG.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(IMG / "studio-zoom200.png"))
    finally:
        drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_cancel_a_running_job_from_the_page(studio, browser, svc_kal_corpus):
    drv = browser
    _train_form(drv, studio, svc_kal_corpus, "cpu")  # long enough to be cancelled
    _fill(drv, (("train-profile", "studio_cancel"), ("train-minmin", "0")))
    drv.find_element(By.ID, "train-start").click()
    _wait(drv, lambda d: _text(d, "train-state") == "running", 60, "the job to run")
    drv.find_element(By.ID, "train-cancel").click()
    _wait(
        drv,
        lambda d: d.find_element(By.ID, "train-watch").get_attribute("data-state") in ("done", "error", "cancelled"),
        60,
        "the job to stop",
    )
    assert drv.find_element(By.ID, "train-watch").get_attribute("data-state") == "cancelled"
    Select(drv.find_element(By.ID, "jobs-filter")).select_by_value("cancelled")
    _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-state='cancelled']"), 10, "the filter")
    assert not drv.find_elements(By.CSS_SELECTOR, "#jobs tr[data-state='done']")
