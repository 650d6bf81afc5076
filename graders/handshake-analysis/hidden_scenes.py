"""The hidden capture of `handshake-analysis`: a handshake refused with an alert, and a resumed
session. Kept out of scenario.py so that a student's bundle does not list them."""

from __future__ import annotations

import random
import ssl

import scenario
from scenario import Plan, World


def hidden_plans(world: World, rng: random.Random) -> list[Plan]:
    v = rng.choice((ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3))
    refused = world.plan(
        rng.choice((ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)),
        trusted=False,
        client_closes=False,
        server_closes=False,
    )
    first = world.plan(v, client_closes=True, server_closes=True)
    again = world.plan(
        v,
        sni=first.sni,
        cert=first.cert,
        suite=first.suite,
        session="previous",
        client_closes=True,
        server_closes=True,
    )
    return [refused, first, again]


scenario.HIDDEN["plans"] = hidden_plans
