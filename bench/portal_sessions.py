"""The portal benchmark's partner sessions: what each does over HTTP (sign in, browse with a
think time, keep its page's event stream open, edit a deal) and the page times they record."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field

import requests

PASSWORD = "bench-partner"
TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
DEAL_LINK = re.compile(r'href="/deals/(\w+)"')


@dataclass
class Timings:
    """Page times in seconds per kind of request, and the errors, shared by the sessions."""

    pages: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, error: str | None = None) -> None:
        """Record one request."""
        with self.lock:
            self.pages.setdefault(kind, []).append(seconds)
            if error:
                self.errors.append(f"{kind}: {error}")


def sign_in(url: str, email: str) -> requests.Session:
    """A signed-in HTTP session of the partner user with this e-mail."""
    http = requests.Session()
    http.trust_env = False
    token = TOKEN.search(http.get(f"{url}/login", timeout=30).text)
    assert token, "no sign-in form"
    answer = http.post(
        f"{url}/login",
        data={"csrf_token": token.group(1), "login": email, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"{email} could not sign in (HTTP {answer.status_code})")
    return http


@dataclass(frozen=True)
class Load:
    """How each session behaves: its end, mean think time and how often it edits."""

    until: float
    think: float
    edit_every: int


def browse(url: str, email: str, load: Load, timings: Timings) -> None:
    """One partner session's loop of page views and edits until ``load.until``, its live
    event stream open meanwhile."""
    rng = random.Random(email)
    # sessions arrive over one think time, not all in the same instant
    time.sleep(rng.uniform(0, load.think))
    started = time.perf_counter()
    try:
        http = sign_in(url, email)
    except (RuntimeError, AssertionError, requests.RequestException) as exc:
        timings.add("sign-in", time.perf_counter() - started, str(exc))
        return
    first = timed(http, "GET", f"{url}/deals", "deals", timings) or ""
    deals = DEAL_LINK.findall(first)
    cursor = re.search(r'data-feed-cursor="(\d+)"', first)
    stream = threading.Thread(
        target=follow,
        args=(http, url, cursor.group(1) if cursor else "0", load.until, timings),
        daemon=True,
    )
    stream.start()
    count = 0
    while time.monotonic() < load.until:
        if load.think > 0:
            # a reader's pause, cut short at the end of the run
            pause = min(rng.expovariate(1 / load.think), 6 * load.think)
            time.sleep(max(0.0, min(pause, load.until - time.monotonic())))
            if time.monotonic() >= load.until:
                break
        count += 1
        if deals and count % load.edit_every == 0:
            edit(http, url, rng.choice(deals), timings)
            continue
        kind, path = rng.choice(
            [
                ("deals", f"/deals?page={rng.randint(1, 3)}"),
                ("deal search", "/deals?q=a&sort=-Amount"),
                ("accounts", "/accounts"),
                ("contacts", f"/contacts?page={rng.randint(1, 2)}"),
                ("deal", f"/deals/{rng.choice(deals)}" if deals else "/deals"),
            ]
        )
        page = timed(http, "GET", f"{url}{path}", kind, timings)
        if page is not None and not deals:
            deals = DEAL_LINK.findall(page)
    stream.join(timeout=30)


def follow(http: requests.Session, url: str, since: str, until: float, timings: Timings) -> None:
    """The session's live event stream from its first page's cursor (what an open page's
    ``EventSource`` reads) until ``until``, reconnecting when the portal ends a connection;
    a failed connection is an error of kind ``events``."""
    while time.monotonic() < until:
        try:
            with http.get(
                f"{url}/events", headers={"Last-Event-ID": since}, stream=True, timeout=30
            ) as answer:
                if answer.status_code != 200:
                    timings.add("events", 0.0, f"HTTP {answer.status_code}")
                    return
                for line in answer.iter_lines(decode_unicode=True):
                    if str(line or "").startswith("id: "):
                        since = str(line)[4:]
                    if time.monotonic() >= until:
                        return
        except requests.RequestException as exc:
            if time.monotonic() < until:
                timings.add("events", 0.0, type(exc).__name__)
            return


def edit(http: requests.Session, url: str, deal: str, timings: Timings) -> None:
    """Change a deal's next step from its page's form."""
    page = timed(http, "GET", f"{url}/deals/{deal}", "deal", timings)
    token = TOKEN.search(page or "")
    fields = dict(re.findall(r'name="(\w+)"[^>]*value="([^"]*)"', page or ""))
    stage = re.search(r'<option selected value="([^"]+)"', page or "")
    if not token or not stage:
        return
    data = {
        "csrf_token": token.group(1),
        "StageName": stage.group(1),
        "Amount": fields.get("Amount", ""),
        "CloseDate": fields.get("CloseDate", ""),
        "NextStep": f"bench {time.time():.3f}",
    }
    timed(http, "POST", f"{url}/deals/{deal}", "edit", timings, data=data, expect=302)


def timed(
    http: requests.Session,
    method: str,
    address: str,
    kind: str,
    timings: Timings,
    data: dict[str, str] | None = None,
    expect: int = 200,
) -> str | None:
    """One request, timed; its body when it answered as expected."""
    started = time.perf_counter()
    try:
        answer = http.request(method, address, data=data, allow_redirects=False, timeout=60)
    except requests.RequestException as exc:
        timings.add(kind, time.perf_counter() - started, type(exc).__name__)
        return None
    seconds = time.perf_counter() - started
    error = None if answer.status_code == expect else f"HTTP {answer.status_code}"
    timings.add(kind, seconds, error)
    return answer.text if error is None else None
