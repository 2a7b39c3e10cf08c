#!/usr/bin/env python3
"""The web console in a real browser (Debian's chromium + chromium-driver, driven by selenium)
against `aiops demo` with its default fault (payment's latency) and an API token:

* the console asks for the token once and keeps it for the tab;
* the injected fault's incident appears in the live list with `payment` as the top candidate;
* on the incident page `payment` is the first candidate, and its evidence chart drew as many
  points as the API holds for that series over the analysis window (and its canvas is not blank);
* "This was the root cause" posts feedback and the tally the API reports goes up;
* the series page of payment's latency shows the anomaly event (a shaded band) and the scores;
* the scaling page charts the forecast; the health page says ready;
* the pages are keyboard-reachable; no console errors (beyond the one 401 that asks for the
  token); screenshots at 1280×800 (light and dark) and at phone width go to --out.

    browser_test.py --aiops BIN --out DIR
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import shutil
import tempfile
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

TOKEN = "console-test-token-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, fn, deadline_s=120, every_s=0.25):
    """Polls `fn` until it returns something truthy, or fails naming `what`."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


class Api:
    def __init__(self, base):
        self.base = base

    def get(self, path):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)


def severe(logs):
    return [e for e in logs if e.get("level") == "SEVERE"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aiops", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = Api(base)
    work = tempfile.mkdtemp(prefix="aiops-browser-")
    env = dict(os.environ, AIOPS__SERVER__API_TOKEN=TOKEN, AIOPS__ARCHIVE__SEGMENT_MAX_SECS="10")
    log = open(os.path.join(work, "demo.log"), "w")
    demo = subprocess.Popen(
        [args.aiops, "demo", "--data-dir", os.path.join(work, "data"), "--listen", f"127.0.0.1:{port}",
         "--interval-secs", "5", "--fault-after-secs", "15", "--duration-secs", "600"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    driver = None
    passed = False
    try:
        inc = wait("the fault's incident with payment first", lambda: next(
            (i for i in api.get("/api/v1/incidents")["incidents"]
             if i.get("top_candidate") and i["top_candidate"]["service"] == "payment"), None))
        print(f"incident {inc['id']}: {inc['title']}")

        opts = webdriver.ChromeOptions()
        opts.binary_location = args.chromium
        for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=1280,800", "--force-prefers-reduced-motion"]:
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # Chromium's profile and sockets go into the work directory, removed when the test passes.
        browser_tmp = os.path.join(work, "chromium")
        os.makedirs(browser_tmp)
        opts.add_argument(f"--user-data-dir={browser_tmp}")
        driver = webdriver.Chrome(service=Service(args.chromedriver, env=dict(os.environ, TMPDIR=browser_tmp)),
                                  options=opts)
        driver.set_window_size(1280, 800)
        shot = lambda name: driver.save_screenshot(os.path.join(args.out, f"{name}.png"))  # noqa: E731

        # The token, asked once.
        driver.get(base + "/")
        dialog = wait("the token dialog", lambda: driver.find_element(By.ID, "login").get_attribute("open") is not None
                      and driver.find_element(By.ID, "login"))
        shot("00-token")
        driver.find_element(By.ID, "token").send_keys(TOKEN + Keys.ENTER)
        wait("the dialog to close", lambda: dialog.get_attribute("open") is None)
        # The only errors so far: the 401 that asked for the token.
        early = severe(driver.get_log("browser"))
        assert all("401" in e["message"] for e in early), early

        # Incidents: live list, payment on top.
        row = wait("the incident row", lambda: driver.find_element(By.CSS_SELECTOR, f'tr[data-id="{inc["id"]}"]'))
        assert row.find_element(By.CSS_SELECTOR, ".top-candidate").text == "payment", row.text
        # The fault kind the API gives the top candidate is shown next to it (unless unknown).
        kind = inc["top_candidate"].get("fault_kind", "")
        assert kind in ("cpu", "memory", "latency", "errors", "overload", "unknown"), kind
        if kind != "unknown":
            assert row.find_element(By.CSS_SELECTOR, ".kind").text == f"({kind})", row.text
        shot("01-incidents")
        # Keyboard: Tab from the top reaches the skip link, then the navigation.
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        focused = [driver.switch_to.active_element.text]
        for _ in range(3):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            focused.append(driver.switch_to.active_element.text)
        assert "Incidents" in focused, focused

        # The incident: payment first, its evidence drawn with every sample of the window.
        row.find_element(By.CSS_SELECTOR, "a").click()
        # (Read in one script: the page redraws when the incident is ranked again.)
        chart = wait("payment first, its evidence chart drawn", lambda: driver.execute_script(
            """const c = document.querySelector('#candidates section.candidate');
               if (!c) return null;
               const f = c.querySelector('figure.chart[data-drawn="true"]');
               if (c.dataset.service !== 'payment' || !f) return {service: c.dataset.service};
               const cv = f.querySelector('canvas');
               const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
               let painted = false;
               for (let i = 3; i < d.length && !painted; i += 4) painted = d[i] !== 0;
               return {service: c.dataset.service, points: +f.dataset.points, start: +f.dataset.start,
                       end: +f.dataset.end, painted};""") or None)
        assert chart["service"] == "payment", chart
        chart = wait("payment's evidence chart", lambda: driver.execute_script(
            """const f = document.querySelector('#candidates section.candidate[data-service="payment"] figure.chart[data-drawn="true"]');
               if (!f) return null;
               const cv = f.querySelector('canvas');
               const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
               let painted = false;
               for (let i = 3; i < d.length && !painted; i += 4) painted = d[i] !== 0;
               return {points: +f.dataset.points, start: +f.dataset.start, end: +f.dataset.end, painted};"""))
        full = api.get(f"/api/v1/incidents/{urllib.parse.quote(inc['id'])}")
        top = full["candidates"][0]
        assert top["service"] == "payment", top
        sid = api.get("/api/v1/series?limit=1&match[]=" + urllib.parse.quote(top["metric"]))["series"][0]["id"]
        # The page charts the analysis window from half an hour before detection.
        start_ms, end_ms = chart["start"], chart["end"]
        assert start_ms >= full["window_start_ms"] and end_ms <= full["window_end_ms"], (chart, full["window_end_ms"])
        samples = api.get(f"/api/v1/series/{sid}/samples?start={start_ms / 1000}&end={end_ms / 1000}")["samples"]
        drawn = chart["points"]
        assert drawn == len(samples) and drawn > 50, (drawn, len(samples))
        assert chart["painted"], "payment's evidence canvas is blank"
        print(f"payment's evidence chart: {drawn} points, as the API holds")
        shot("02-incident")
        driver.set_window_size(1280, 1800)
        shot("02-incident-tall")
        driver.set_window_size(1280, 800)

        # Feedback: the control posts, the tally goes up.
        before = api.get("/api/v1/incidents")["feedback"]["total"]
        wait("the feedback control", lambda: driver.execute_script(
            """const b = document.querySelector('#candidates section.candidate[data-service="payment"] button.feedback');
               if (b) b.click();
               return !!b;"""))
        wait("the page to name payment", lambda: "payment" in driver.find_element(By.ID, "incident-feedback").text)
        after = wait("the tally to change", lambda: (t := api.get("/api/v1/incidents")["feedback"]["total"]) > before and t)
        print(f"feedback tally {before} -> {after}")

        # Dark theme, same page.
        driver.find_element(By.ID, "theme").click()
        assert driver.execute_script("return document.documentElement.dataset.theme") == "dark"
        wait("charts redrawn", lambda: driver.find_elements(By.CSS_SELECTOR, 'figure.chart[data-drawn="true"]'))
        shot("03-incident-dark")
        driver.find_element(By.ID, "theme").click()

        # The series page: payment's latency with its event shaded and the scores underneath.
        ev = wait("payment's anomaly event", lambda: next(
            (e for e in api.get("/api/v1/anomalies?service=payment")["anomalies"]), None))
        # The window ends now: samples still arriving for it may land between the page's read and
        # ours, so the page must hold at least what the API held before it loaded and at most what
        # it holds after.
        start, end = int(ev["start_ms"] / 1000) - 1800, int(time.time())
        scored_url = f"/api/v1/series/{ev['series_id']}/scored?start={start}&end={end}"
        held_before = len(api.get(scored_url)["points"])
        driver.get(f"{base}/console/#/series/{ev['series_id']}?start={start}&end={end}")
        chart = wait("the series chart", lambda: driver.find_element(By.CSS_SELECTOR, '#series-chart[data-drawn="true"]'))
        wait("the score chart", lambda: driver.find_element(By.CSS_SELECTOR, '#score-chart[data-drawn="true"]'))
        events = driver.find_elements(By.CSS_SELECTOR, "#series-events li.event")
        assert events, "no event listed on the series page"
        # Each event says why it alarmed, as the API does.
        assert ev.get("reason"), ev
        reasons = [e.get_attribute("data-reason") for e in events]
        assert ev["reason"] in reasons, (ev["reason"], reasons)
        print(f"payment's event alarmed by {ev['reason']}: {events[reasons.index(ev['reason'])].text}")
        scored = api.get(scored_url)
        drawn = int(chart.get_attribute("data-points"))
        assert 100 < held_before <= drawn <= len(scored["points"]), (held_before, drawn, len(scored["points"]))
        assert scored["events"], scored["events"]
        # The event's band was painted inside the plot.
        assert int(chart.get_attribute("data-ranges") or 0) >= 1, chart.get_attribute("data-ranges")
        shot("04-series")

        # Scaling: the forecast drawn.
        driver.get(f"{base}/console/#/scaling")
        target = wait("a scaling target with its forecast drawn", lambda: driver.execute_script(
            """for (const t of document.querySelectorAll('section.target')) {
                 const f = t.querySelector('figure.chart[data-drawn="true"]');
                 if (!f || !(+t.dataset.forecastSteps > 0)) continue;
                 const cv = f.querySelector('canvas');
                 const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
                 for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return t.dataset.name;
               }
               return null;"""))
        print(f"scaling target {target}: forecast drawn")
        shot("05-scaling")

        # Health.
        driver.get(f"{base}/console/#/health")
        wait("ready", lambda: driver.find_element(By.ID, "ready-status").text == "ready")
        shot("06-health")

        # Phone width.
        driver.set_window_size(390, 844)
        driver.get(f"{base}/console/#/incidents")
        wait("the list at phone width", lambda: driver.find_element(By.CSS_SELECTOR, f'tr[data-id="{inc["id"]}"]'))
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width} px wide at a 390 px window"
        shot("07-incidents-phone")

        errors = severe(driver.get_log("browser"))
        assert not errors, errors
        print(f"console in chromium: all checks passed; screenshots in {args.out}")
        passed = True
    except Exception:
        if driver is not None:
            try:
                driver.save_screenshot(os.path.join(args.out, "failure.png"))
                print("browser log:", driver.get_log("browser"), file=sys.stderr)
            except Exception:  # noqa: BLE001
                pass
        log.flush()
        with open(os.path.join(work, "demo.log")) as f:
            print("".join(f.readlines()[-30:]), file=sys.stderr)
        print(f"the demo's data and log are kept in {work}", file=sys.stderr)
        raise
    finally:
        if driver is not None:
            driver.quit()
        demo.terminate()
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
        log.close()
    if passed:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
