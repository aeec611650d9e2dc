"""Headless Debian Chromium driven by Selenium (chromedriver from the same Debian release): the real front end."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> str | None:
    """None when a browser can be driven, else why not."""
    for p in (CHROMIUM, CHROMEDRIVER):
        if not Path(p).exists():
            return f"{p} is missing: install Debian's chromium and chromium-driver (see .ci/run)"
    return None


class Browser:
    def __init__(self, user_data_dir: Path, width=1600, height=1000):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
            f"--user-data-dir={user_data_dir}",
        ):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_script_timeout(120)

    def open(self, url: str, ready_js: str, timeout: float = 90):
        self.driver.get(url)
        self.wait_for(ready_js, timeout)

    def wait_for(self, js_condition: str, timeout: float = 60, poll: float = 0.25):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.driver.execute_script(f"try {{ return !!({js_condition}); }} catch (e) {{ return false; }}"):
                return
            time.sleep(poll)
        raise TimeoutError(f"browser condition not met in {timeout}s: {js_condition}\nconsole: {self.console()[-10:]}")

    def run_async(self, body: str, *args):
        """Run an async JS function body; `return` its JSON-able result."""
        script = (
            "const done = arguments[arguments.length - 1];"
            f"(async (...args) => {{ {body} }})(...Array.from(arguments).slice(0, -1))"
            ".then(r => done({ok: true, value: r}))"
            ".catch(e => done({ok: false, error: String(e && e.stack || e)}));"
        )
        res = self.driver.execute_async_script(script, *args)
        if not res["ok"]:
            raise RuntimeError(f"browser script failed: {res['error']}")
        return res["value"]

    def console(self) -> list[dict]:
        self._log = getattr(self, "_log", []) + self.driver.get_log("browser")
        return self._log

    def screenshot(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))

    def quit(self):
        self.driver.quit()
