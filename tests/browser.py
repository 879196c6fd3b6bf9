"""Headless Chromium for the tests: one browser process for many pages, driven over its DevTools pipe.

Starting Chromium costs about two seconds; opening a page in a running one, a fraction of that. The
browser is started with `--remote-debugging-pipe`: it reads DevTools protocol commands (JSON, each
ended by a NUL byte) on its file descriptor 3 and writes replies and events on descriptor 4. Only the
standard library is needed. Each page is opened in a tab of its own, waited for (its load event, then
MathJax's first typesetting if the page has MathJax), read, and closed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import time
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-pipe",
]

# resolves once the page's maths is typeset (MathJax 3's startup promise), at once on a page without MathJax
TYPESET = "(window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve()"


class BrowserError(RuntimeError):
    pass


def chromium() -> str:
    """Chromium's path; without it a test is skipped here, and fails under CI=true (.ci/run installs it)."""
    import shutil

    import pytest

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing in CI: .ci/run should have installed it (apt-get install chromium)")
        pytest.skip("Chromium not installed; to run the browser tests: sudo apt-get install chromium")
    return path


class Browser:
    """`with Browser(executable, profile) as b: html = b.dom(url)`; `b.screenshot(url, path, width, height)`."""

    def __init__(self, executable: str, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []
        commands_read, self._commands = _pipe_above(4)
        self._replies, replies_write = _pipe_above(4)
        log = profile.parent / f"{profile.name}.log"
        profile.mkdir(parents=True, exist_ok=True)
        actions = [(os.POSIX_SPAWN_DUP2, commands_read, 3), (os.POSIX_SPAWN_DUP2, replies_write, 4),
                   (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        # posix_spawn instead of subprocess: it places the two pipe ends on 3 and 4 without a preexec hook
        self.pid = os.posix_spawn(executable, [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                  os.environ, file_actions=actions, setpgroup=0)
        self.log = log
        os.close(commands_read)
        os.close(replies_write)

    # --- the protocol ---------------------------------------------------------------------------------

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply; events that arrive meanwhile are kept for `wait_for`."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_for(self, event: str, session: str) -> dict:
        while True:
            for k, message in enumerate(self._events):
                if message["method"] == event and message.get("sessionId") == session:
                    return self._events.pop(k)
            self._events.append(self._read())

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s (log: {self.log})")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed its DevTools pipe; it may have crashed (log: {self.log})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # --- pages ----------------------------------------------------------------------------------------

    def _open(self, url: str, width: int | None = None, height: int | None = None) -> tuple[str, str]:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        if width and height:
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.enable", session=session)
        navigated = self.send("Page.navigate", {"url": url}, session)
        if navigated.get("errorText"):
            raise BrowserError(f"{url}: {navigated['errorText']}")
        self.wait_for("Page.loadEventFired", session)
        self.evaluate(TYPESET, session)
        return target, session

    def evaluate(self, expression: str, session: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def read(self, url: str, expression: str):
        """Open `url`, wait until it loads and its maths is typeset, return the value of a JavaScript expression."""
        target, session = self._open(url)
        try:
            return self.evaluate(expression, session)
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    def dom(self, url: str) -> str:
        """The page's DOM as HTML, once it has loaded and its maths is typeset."""
        return self.read(url, "document.documentElement.outerHTML")

    def screenshot(self, url: str, path: Path, width: int, height: int, around: str | None = None) -> None:
        """A PNG of the page at `url`, `width` x `height` pixels; of the part around element `around` (a CSS
        selector, the element's top a little below the picture's top) instead of the page's top when given."""
        target, session = self._open(url, width, height)
        try:
            options: dict = {"format": "png"}
            if around is not None:
                top = self.evaluate(
                    f"(() => {{ const e = document.querySelector({json.dumps(around)});"
                    " return e ? e.getBoundingClientRect().top + window.scrollY : null; })()", session)
                if top is None:
                    raise BrowserError(f"{url}: no element matches {around!r}")
                options.update(captureBeyondViewport=True,
                               clip={"x": 0, "y": max(0.0, top - 200), "width": width, "height": height, "scale": 1})
            data = self.send("Page.captureScreenshot", options, session)["data"]
            path.write_bytes(base64.b64decode(data))
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    # --- lifetime -------------------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the browser and the helper processes it started
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self._commands)
        os.close(self._replies)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pipe_above(lowest: int) -> tuple[int, int]:
    """os.pipe(), both ends moved above `lowest` so that placing them on 3 and 4 cannot overwrite one."""
    ends = []
    for fd in os.pipe():
        if fd <= lowest:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest + 1)
            os.close(fd)
            fd = moved
        ends.append(fd)
    return ends[0], ends[1]
