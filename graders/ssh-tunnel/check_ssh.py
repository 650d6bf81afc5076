"""Checks for `ssh-tunnel`: the student's `ssh -L` against a real sshd, judged on the wire.

The grader runs OpenSSH's sshd as horiem.ca:2222 and the unchanged plaintext echo server
behind it, hands the student a per-run key pair, and runs tunnel.sh (sandboxed, unprivileged).
One capture shows both hops: SSH on the public port, the message in clear only on the loopback
hop from sshd to the echo server. sshd's own log says how the client logged in; an impostor
sshd with another host key says whether the client checks whom it talks to.
"""

from __future__ import annotations

from support import (
    ROUND_TRIP,
    EchoBackend,
    ImpostorRun,
    Keys,
    Trip,
    port,
    require_ready,
    run_impostor,
    sshd_view,
    through_sshd,
)

import harness
from harness import GradingContext, Shared, check, fail


@check(
    title="Through your tunnel, the echo server answers",  # = ROUND_TRIP (a literal: the bundle reads it)
    points=4,
    expected="tunnel.sh logs in to tunnel@horiem.ca:2222 with the key you were given, listens on "
    "127.0.0.1:7000, and a line sent there comes back from the echo server as 'echo: <line>'.",
    hint="exec ssh -N -L 127.0.0.1:7000:localhost:9000 -p 2222 -i id_ed25519 "
    "-o UserKnownHostsFile=known_hosts tunnel@horiem.ca",
)
def test_ssh_round_trip(
    grading: GradingContext,
    trip: Shared[Trip],
    echo: EchoBackend,
    keys: Keys,
    token: str,
    evidence: harness.EvidenceRecorder,
) -> None:
    t = trip.get(owner=True)
    evidence.text("What sshd saw", sshd_view(t.log))
    if t.failure is not None:
        f = t.failure
        said = t.log.lines(r"^(Accepted \S+ for|Failed (?!none)|Connection closed|Disconnected|Received d)")
        seen = f.seen + ("\nWhat sshd saw: " + "; ".join(said[:4]) if said else "\nsshd saw no login.")
        if t.log.accepted:
            seen += "\nYour client logged in, but nothing of it listened on 127.0.0.1:7000."
        raise type(f)(
            seen,
            expected=f"tunnel.sh listening on 127.0.0.1:{port(grading, 'local_port')} within "
            f"{grading.assignment.ready_seconds:g} s",
            hint="ssh listens on the forward's local port once it has logged in: is the forward there "
            "(-L 127.0.0.1:7000:localhost:9000 or LocalForward)? Does anything ask a question with no "
            "terminal to answer it (BatchMode yes makes ssh say so instead)? Run tunnel.sh yourself.",
        )
    if t.ok and not through_sshd(grading, t, echo, keys, token.encode()):
        raise fail(
            "The echo came back, but not through sshd: sshd opened no forward to the echo server, so "
            "something of yours carried the line to port 9000 some other way.",
            expected="ssh -L: the client asks sshd to open the connection to the echo server",
        )
    if not t.ok:
        refused = t.log.refused_forwards
        why = (
            f"sshd refused the forward your client asked for (to {refused[0]}): the echo server is "
            "localhost port 9000 as the server sees it"
            if refused
            else f"the echo server received {len(echo.lines)} line(s)"
        )
        raise fail(
            f"The tunnel listened, but the round trip failed: {t.detail}; {why}.\n"
            f"What your tunnel said:\n{t.said}",
            hint="The target of -L is seen from the server: localhost:9000 (the echo server on its "
            "loopback).",
        )


@check(
    title="On the wire: SSH on 2222, the message in clear only on the loopback hop behind sshd",
    needs="ssh-round-trip",
    points=4,
    expected="An eavesdropper on port 2222 sees the SSH banners and encrypted packets, never the "
    "message; the hop from sshd to the echo server (port 9000) carries the message itself in "
    "plaintext (the code behind the tunnel is unchanged).",
)
def test_ssh_wire(
    grading: GradingContext,
    trip: Shared[Trip],
    echo: EchoBackend,
    keys: Keys,
    token: str,
    evidence: harness.EvidenceRecorder,
) -> None:
    t = trip.get()
    require_ready(t)
    secret = token.encode()
    client = b"".join(c.client_stream for c in t.public)
    server = b"".join(c.server_stream for c in t.public)
    to_echo = b"".join(c.client_stream for c in t.hop)
    hop = b"".join(c.client_stream + c.server_stream for c in t.hop)
    evidence.side_by_side(
        "One capture, two hops",
        (
            "Public port 2222: what an eavesdropper on the network sees",
            harness.printable((client + server)[:600]),
        ),
        ("Loopback hop sshd -> echo server, inside the server", harness.printable(hop[:600])),
    )
    if not t.public:
        raise fail(
            "No connection to the server's port 2222 was seen: your tunnel does not go through "
            "horiem.ca:2222."
        )
    if secret in client + server:
        raise fail("The message travels in clear on the public port 2222.")
    for side, data in (("your client", client), ("the server", server)):
        if not data.startswith(b"SSH-2.0-"):
            began = harness.printable(data[:40])
            raise fail(f"On port 2222, {side} did not speak SSH: it began with {began!r}.")
    if secret in to_echo:
        if not through_sshd(grading, t, echo, keys, secret):
            raise fail(
                "The message reached the echo server, but not through sshd: sshd opened no forward to "
                "port 9000. Something of yours connected to it directly.",
                expected="ssh -L: the client asks sshd to open the connection to the echo server",
            )
        return  # the message crossed the hop behind sshd in clear, and only SSH crossed 2222
    if t.ok:
        raise harness.HarnessError(
            "the echo came back but the hop to the echo server was not seen on the wire"
        )
    raise harness.Blocked(f"The message never reached the echo server on port 9000 (see '{ROUND_TRIP}').")


@check(
    title="Your client verifies the server's host key",
    needs="ssh-round-trip",
    points=4,
    expected="With the known_hosts line you hand in, your client logs in to the course's server "
    "(its host key is certified by the course's host CA) and refuses an impostor on the same name "
    "and port whose host key nobody certified.",
    hint="@cert-authority [horiem.ca]:2222 <the CA key in host_ca.pub>, in known_hosts, used with "
    "UserKnownHostsFile; never StrictHostKeyChecking no or accept-new, never UserKnownHostsFile /dev/null.",
)
def test_ssh_host_key(
    grading: GradingContext, keys: Keys, trip: Shared[Trip], evidence: harness.EvidenceRecorder
) -> None:
    t = trip.get()
    if not t.log.accepted:  # refusing every server is not verifying: it must accept the right one
        raise harness.Blocked(
            "Your client never logged in to the course's server, so refusing an impostor would prove "
            f"nothing (see '{ROUND_TRIP}')."
        )
    imp: ImpostorRun = run_impostor(grading, keys)
    evidence.text("What the impostor's sshd saw", sshd_view(imp.log))
    evidence.text("What your tunnel said to the impostor", imp.said)
    refused = [ln for ln in imp.log.lines(r"^Failed publickey") if keys.student.fingerprint in ln]
    if refused:  # the impostor must let in whoever trusts it, or trusting it would go unseen
        raise harness.HarnessError(f"the impostor sshd refused the student's key: {refused[0]}")
    if imp.log.accepted:
        raise fail(
            "Your client logged in to an impostor: a server on horiem.ca:2222 with a host key that "
            "the course's CA never certified. Anyone between you and the server could read your tunnel."
            f"\nWhat your tunnel said:\n{imp.said}",
            expected="'Host key verification failed.' and no tunnel",
        )


@check(
    title="Key authentication, never a password",
    needs="ssh-round-trip",
    points=3,
    expected="sshd's log shows your login with the key you were given (publickey) and no password "
    "or keyboard-interactive attempt.",
    hint="-i id_ed25519 (or IdentityFile), and no PreferredAuthentications password / sshpass / SSH_ASKPASS.",
)
def test_ssh_key_auth(keys: Keys, trip: Shared[Trip], evidence: harness.EvidenceRecorder) -> None:
    t = trip.get()
    evidence.text("What sshd saw", sshd_view(t.log))
    if t.log.password_attempts:
        raise fail(
            "Your client tried a password: sshd logged "
            f"{t.log.password_attempts[0]!r}. A password can be guessed or phished; the key cannot.",
            expected="only publickey logins",
        )
    if not t.log.accepted:
        raise harness.Blocked(f"sshd saw no login at all (see '{ROUND_TRIP}').")
    if not t.log.accepted_key(keys.student.fingerprint):
        seen = t.log.accepted[0]
        raise fail(
            f"sshd did not see a login with the key you were given ({keys.student.fingerprint}): {seen} "
            f"(see '{ROUND_TRIP}')."
        )


@check(
    title="The forwarded port listens on loopback only",
    needs="ssh-round-trip",
    points=3,
    expected="The tunnel's local end listens on 127.0.0.1:7000 (or ::1), not on every interface.",
    hint="-L 127.0.0.1:7000:localhost:9000, and no GatewayPorts yes.",
)
def test_ssh_loopback_only(grading: GradingContext, trip: Shared[Trip]) -> None:
    t = trip.get()
    require_ready(t)
    wide = [a for a in t.listening if not harness.is_loopback(a)]
    if wide:
        raise fail(
            f"Your tunnel listens on {', '.join(wide)} port {port(grading, 'local_port')}: anyone who can "
            "reach your machine on the network can use it, and through it the server, as you.",
            expected="127.0.0.1 (or ::1) only",
        )
