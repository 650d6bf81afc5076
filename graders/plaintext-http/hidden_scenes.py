"""The hidden capture of `plaintext-http`: the harder cases, one per connection.

Kept out of scenario.py so that a student's bundle (public checks only) does not list them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import scenario
from scenario import AGENTS, KNOWN_HTTP_PORTS, WORDS, Request, Story, WebServer, _site, token

from harness import HarnessError, Scene, loopback, parse_segment


def hidden(scene: Scene, story: Story, rng: random.Random, taken: set[str], tlds: list[str]) -> None:
    """``taken``: addresses not to use (the practice capture's); ``tlds``: the name suffixes to use.

    The four cases come in a seeded order, with zero to two ordinary requests among them, so no
    program can find a case by its place in the capture: the checks find it by name."""
    host = _site(rng, tlds)
    agent = rng.choice(AGENTS)
    cookies = [("session", token(rng, 24))]
    web = WebServer(scene.listen(loopback(rng, taken), 80))
    msg = str(rng.randrange(100, 999))
    port = rng.choice([p for p in range(5000, 8000) if p not in KNOWN_HTTP_PORTS])
    odd = WebServer(scene.listen(loopback(rng, taken), port))
    a, b, c = rng.sample(WORDS, 3)
    raw = f"q={a}+{b}%26{c}&tag=caf%C3%A9+au+lait&sum=1%2B1"
    assert quote_plus(f"{a} {b}&{c}") == raw.split("&")[0][2:]
    cases: list[tuple[str, Callable[[], None]]] = [
        # One request sent in three TCP segments.
        (
            "split",
            lambda: story.http(
                web,
                [
                    Request(
                        "GET",
                        host,
                        "/reports",
                        [("id", str(rng.randrange(1000, 9999))), ("owner", rng.choice(WORDS))],
                        agent=agent,
                        cookies=cookies,
                    )
                ],
                split=3,
            ),
        ),
        # Three requests on one keep-alive connection.
        (
            "keep-alive",
            lambda: story.http(
                web,
                [
                    Request("GET", host, "/inbox", agent=agent, cookies=cookies, keep_alive=True),
                    Request(
                        "GET",
                        host,
                        f"/inbox/{msg}",
                        [("view", "full")],
                        agent=agent,
                        cookies=cookies,
                        keep_alive=True,
                    ),
                    Request(
                        "POST",
                        host,
                        f"/inbox/{msg}/reply",
                        agent=agent,
                        cookies=cookies,
                        keep_alive=True,
                        form=[("text", f"{rng.choice(WORDS)}{rng.randrange(10, 99)}")],
                    ),
                ],
            ),
        ),
        # HTTP on a port no dissector guesses.
        (
            "odd-port",
            lambda: story.http(
                odd,
                [
                    Request(
                        "GET",
                        f"admin.{host}:{port}",
                        "/panel",
                        [("debug", "1")],
                        agent=agent,
                        cookies=[("admin", token(rng, 16))],
                    )
                ],
            ),
        ),
        # Spaces as `+`, and percent-escapes (an `&` and a `+` inside values, UTF-8).
        (
            "encoding",
            lambda: story.http(
                web, [Request("GET", host, "/search", raw_query=raw, agent=agent, cookies=cookies)]
            ),
        ),
    ]
    makers = dict(cases)
    for name in case_order(rng):
        if name in makers:
            story.case(name, makers[name])
        else:  # an ordinary request among the cases
            page = f"/{rng.choice(WORDS)}/{rng.randrange(10, 99)}"
            story.case(
                name,
                lambda page=page: story.http(web, [Request("GET", host, page, agent=agent, cookies=cookies)]),
            )


CASES = ("split", "keep-alive", "odd-port", "encoding")


def case_order(rng: random.Random) -> list[str]:
    """The hidden cases in a seeded order, with zero to two ordinary requests among them."""
    names = [*CASES, *(f"plain-{i}" for i in range(rng.randrange(3)))]
    rng.shuffle(names)
    return names


def check_split(frames: list[Any], story: Story) -> None:
    """The split request must really be in several segments, or its check would test nothing."""
    first = story.requests[story.cases["split"][0]]
    port = int(first["client"].rsplit(":", 1)[1])
    sent = [s for f in frames if (s := parse_segment(f)) and s.sport == port and s.payload]
    if len(sent) < 3:
        raise HarnessError(f"the split request went out in {len(sent)} segment(s), not 3")


scenario.HIDDEN.update(scenes=hidden, check=check_split)
