"""Reads TLS handshakes out of a capture with `tshark -T json` (the whole dissection tree).

Usage: python3 analyze.py CAPTURE [KEYLOG]

tshark's JSON repeats a key when a packet holds several records or messages (two
"tls.record" in one object), so the JSON is read keeping every (key, value) pair in order.
Cipher suite and alert names come from tshark's own tables (`tshark -G values`).
"""

import json
import subprocess
import sys

from cryptography import x509
from cryptography.x509.oid import NameOID

MESSAGE_NAMES = {
    "1": "ClientHello", "2": "ServerHello", "4": "NewSessionTicket", "5": "EndOfEarlyData",
    "8": "EncryptedExtensions", "11": "Certificate", "12": "ServerKeyExchange",
    "13": "CertificateRequest", "14": "ServerHelloDone", "15": "CertificateVerify",
    "16": "ClientKeyExchange", "20": "Finished", "24": "KeyUpdate",
}


class Obj(list):
    """A JSON object as the list of its (key, value) pairs: duplicate keys are all kept."""

    def get(self, key, default=None):
        for k, v in self:
            if k == key:
                return v
        return default


def tshark(args):
    return subprocess.run(["tshark"] + args, capture_output=True, text=True, check=True).stdout


def value_names(field):
    """{value: name} of a field, from tshark -G values ('V<TAB>field<TAB>value<TAB>name')."""
    names = {}
    for line in tshark(["-G", "values"]).splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V" and parts[1] == field:
            names.setdefault(int(parts[2]), parts[3])
    return names


def walk(node, key=None):
    """Every (key, value) of the tree in document order, depth first (objects and arrays)."""
    if isinstance(node, Obj):
        for k, v in node:
            yield k, v
            yield from walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield key, item
            yield from walk(item, key)


def objects_with(node, key):
    """Every object in the tree that has `key` directly in it, in order."""
    return [v for _, v in walk(Obj([("", node)])) if isinstance(v, Obj) and v.get(key) is not None]


def values(node, key):
    return [v for k, v in walk(node) if k == key and isinstance(v, str)]


def cert_summary(der_hex):
    cert = x509.load_der_x509_certificate(bytes.fromhex(der_hex.replace(":", "")))

    def cn(name):
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return attrs[0].value if attrs else None

    return {
        "subject_cn": cn(cert.subject),
        "issuer_cn": cn(cert.issuer),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def new_connection(client, server):
    return {
        "client": client, "server": server, "version": None, "cipher_suite": None, "sni": None,
        "resumed": False, "client_handshake": [], "server_handshake": [], "certificate": None,
        "fatal_alert": None, "close_notify": {"client": False, "server": False},
        "application_data": {"client": 0, "server": 0},
    }


def main():
    if len(sys.argv) < 2 or len(sys.argv) > 3:
        print("usage: python3 analyze.py CAPTURE [KEYLOG]", file=sys.stderr)
        sys.exit(2)
    capture = sys.argv[1]
    keylog = sys.argv[2] if len(sys.argv) == 3 else None
    args = ["-r", capture, "-n", "-T", "json", "-Y", "tcp"]
    if keylog:
        args += ["-o", "tls.keylog_file:" + keylog]
    frames = json.loads(tshark(args), object_pairs_hook=Obj)
    suites = value_names("tls.handshake.ciphersuite")
    alerts = value_names("tls.alert_message.desc")

    conns = {}
    is_tls = set()
    client_session = {}
    for frame in frames:
        layers = frame.get("_source").get("layers")
        ip, tcp = layers.get("ip"), layers.get("tcp")
        if ip is None or tcp is None:
            continue
        src = ip.get("ip.src") + ":" + tcp.get("tcp.srcport")
        dst = ip.get("ip.dst") + ":" + tcp.get("tcp.dstport")
        stream = tcp.get("tcp.stream")
        if stream not in conns:
            flags = int(tcp.get("tcp.flags"), 16)
            conns[stream] = new_connection(dst, src) if flags & 0x12 == 0x12 else new_connection(src, dst)
        conn = conns[stream]
        side = "client" if src == conn["client"] else "server"
        tls_layers = [v for k, v in layers if k == "tls"]
        for message in objects_with(tls_layers, "tls.handshake.type"):
            kind = message.get("tls.handshake.type")
            is_tls.add(stream)
            conn[side + "_handshake"].append(MESSAGE_NAMES.get(kind, "Unknown" + kind))
            if kind == "1":
                names = values(message, "tls.handshake.extensions_server_name")
                conn["sni"] = names[0] if names else None
                client_session[stream] = message.get("tls.handshake.session_id", "")
            elif kind == "2":
                chosen = values(message, "tls.handshake.extensions.supported_version")
                version = int(chosen[0] if chosen else message.get("tls.handshake.version"), 16)
                conn["version"] = {0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}.get(version, hex(version))
                suite = int(message.get("tls.handshake.ciphersuite"), 16)
                conn["cipher_suite"] = suites.get(suite, "0x%04X" % suite)
                if version == 0x0304:  # TLS 1.3: the server accepted a PSK
                    conn["resumed"] = "41" in values(message, "tls.handshake.extension.type")
                else:  # TLS 1.2: the server echoed the client's session id
                    sid = message.get("tls.handshake.session_id", "")
                    conn["resumed"] = sid != "" and sid == client_session.get(stream)
            elif kind == "11" and side == "server" and conn["certificate"] is None:
                certs = values(message, "tls.handshake.certificate")
                if certs:
                    conn["certificate"] = cert_summary(certs[0])
        for alert in objects_with(tls_layers, "tls.alert_message.desc"):
            is_tls.add(stream)
            level, desc = int(alert.get("tls.alert_message.level")), int(alert.get("tls.alert_message.desc"))
            if desc == 0:
                conn["close_notify"][side] = True
            elif level == 2 and conn["fatal_alert"] is None:
                name = alerts.get(desc, str(desc)).lower().replace(" ", "_")
                conn["fatal_alert"] = {"from": side, "description": name}
        if stream in is_tls:
            for data in [v for k, v in layers if k == "data"]:
                for size in values(data, "data.len"):
                    conn["application_data"][side] += int(size)

    result = []
    for stream, conn in conns.items():
        if stream not in is_tls:
            continue
        if keylog is None:
            conn["close_notify"] = {"client": None, "server": None}
            conn["application_data"] = {"client": None, "server": None}
        result.append(conn)
    print(json.dumps({"connections": result}, indent=2))


if __name__ == "__main__":
    main()
