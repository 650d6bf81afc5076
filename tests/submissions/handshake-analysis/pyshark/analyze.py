"""TLS handshakes in a capture, read with pyshark.

Usage: python3 analyze.py CAPTURE [KEYLOG]
"""

import json
import re
import sys

import pyshark
from cryptography import x509
from cryptography.x509.oid import NameOID

MESSAGES = {
    1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
    8: "EncryptedExtensions", 11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
    14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished",
    24: "KeyUpdate",
}


def every(layer, name):
    """Every value of a field in a layer: (show, showname) pairs."""
    field = layer.get_field(name)
    if field is None:
        return []
    return [(f.show, f.showname) for f in field.all_fields]


def shown_name(showname):
    """'Cipher Suite: TLS_AES_128_GCM_SHA256 (0x1301)' -> 'TLS_AES_128_GCM_SHA256'."""
    return re.sub(r"\s*\(\w+\)$", "", showname.split(": ", 1)[1])


def common_name(name):
    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return found[0].value if found else None


def cert_info(show):
    cert = x509.load_der_x509_certificate(bytes.fromhex(show.replace(":", "")))
    return {
        "subject_cn": common_name(cert.subject),
        "issuer_cn": common_name(cert.issuer),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class Conn:
    def __init__(self, a, b):
        self.ends = (a, b)
        self.client = None
        self.server = None
        self.info = {
            "version": None, "cipher_suite": None, "sni": None, "resumed": False,
            "client_handshake": [], "server_handshake": [], "certificate": None, "fatal_alert": None,
            "close_notify": {"client": False, "server": False},
            "application_data": {"client": 0, "server": 0},
        }
        self.client_session = ""
        self.tls = False

    def side(self, src):
        return "client" if src == self.client else "server"


def handle_tls(conn, src, layer):
    info = conn.info
    types = [int(v) for v, _ in every(layer, "tls.handshake.type")]
    if 1 in types and conn.client is None:
        conn.client = src
        conn.server = conn.ends[1] if src == conn.ends[0] else conn.ends[0]
    if conn.client is None:
        return
    conn.tls = True
    side = conn.side(src)
    for t in types:
        info[side + "_handshake"].append(MESSAGES.get(t, str(t)))
    sessions = [v for v, _ in every(layer, "tls.handshake.session_id")]
    if 1 in types:
        names = every(layer, "tls.handshake.extensions_server_name")
        info["sni"] = names[0][0] if names else None
        conn.client_session = sessions[0] if sessions else ""
    if 2 in types and side == "server":
        supported = every(layer, "tls.handshake.extensions.supported_version")
        version = supported[0][0] if supported else every(layer, "tls.handshake.version")[0][0]
        info["version"] = {"0x0303": "TLS 1.2", "0x0304": "TLS 1.3"}.get(version, version)
        info["cipher_suite"] = shown_name(every(layer, "tls.handshake.ciphersuite")[0][1])
        if version == "0x0304":
            info["resumed"] = "41" in [v for v, _ in every(layer, "tls.handshake.extension.type")]
        else:
            info["resumed"] = bool(sessions) and sessions[0] != "" and sessions[0] == conn.client_session
    certs = every(layer, "tls.handshake.certificate")
    if certs and side == "server" and info["certificate"] is None:
        info["certificate"] = cert_info(certs[0][0])
    levels = every(layer, "tls.alert_message.level")
    for (level, _), (desc, showname) in zip(levels, every(layer, "tls.alert_message.desc")):
        if desc == "0":
            info["close_notify"][side] = True
        elif level == "2" and info["fatal_alert"] is None:
            name = shown_name(showname).lower().replace(" ", "_")
            info["fatal_alert"] = {"from": side, "description": name}


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: analyze.py CAPTURE [KEYLOG]")
    keylog = sys.argv[2] if len(sys.argv) == 3 else None
    prefs = {"tls.keylog_file": keylog} if keylog else {}
    conns = {}
    cap = pyshark.FileCapture(sys.argv[1], display_filter="tcp", override_prefs=prefs)
    try:
        for pkt in cap:
            src = f"{pkt.ip.src}:{pkt.tcp.srcport}"
            dst = f"{pkt.ip.dst}:{pkt.tcp.dstport}"
            conn = conns.setdefault(pkt.tcp.stream, Conn(src, dst))
            for layer in pkt.layers:
                if layer.layer_name == "tls":
                    handle_tls(conn, src, layer)
                elif layer.layer_name.lower() == "data" and conn.client is not None:
                    for size, _ in every(layer, "data.len"):
                        conn.info["application_data"][conn.side(src)] += int(size)
    finally:
        cap.close()
    out = []
    for conn in conns.values():
        if not conn.tls:
            continue
        if not keylog:
            conn.info["close_notify"] = {"client": None, "server": None}
            conn.info["application_data"] = {"client": None, "server": None}
        out.append({"client": conn.client, "server": conn.server, **conn.info})
    print(json.dumps({"connections": out}, indent=2))


main()
