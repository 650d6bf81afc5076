"""Read the TLS handshakes in a capture, as an eavesdropper (or, with the key log, an endpoint) can.

Usage: python3 analyze.py CAPTURE [KEYLOG]   (prints JSON on stdout)

tshark dissects; this program decides. Without the key log only what travels in clear is
reported and what would need decrypting is null; with it, tshark decrypts both TLS 1.2 and 1.3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timezone

from cryptography import x509
from cryptography.x509.oid import NameOID

FIELDS = [
    "tcp.stream", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags",
    "tls.handshake.type", "tls.handshake.version", "tls.handshake.ciphersuite",
    "tls.handshake.extensions_server_name", "tls.handshake.extensions.supported_version",
    "tls.handshake.extension.type", "tls.handshake.session_id", "tls.handshake.certificate",
    "tls.alert_message.level", "tls.alert_message.desc", "data.len",
    "_ws.col.suite", "_ws.col.alert",
]  # fmt: skip
# Custom columns show a field's value by its name, as Wireshark's GUI does: the IANA suite names.
COLUMNS = '"suite","%Cus:tls.handshake.ciphersuite","alert","%Cus:tls.alert_message.desc"'
HANDSHAKE = {
    1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
    8: "EncryptedExtensions", 11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
    14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished", 24: "KeyUpdate",
}  # fmt: skip
VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def tshark(*args: str) -> str:
    return subprocess.run(["tshark", *args], capture_output=True, text=True, check=True).stdout


def ints(s: str) -> list[int]:
    return [int(x, 0) for x in s.split(",") if x]


def cn(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def certificate(der_hex: str) -> dict[str, str]:
    cert = x509.load_der_x509_certificate(bytes.fromhex(der_hex.replace(":", "")))
    return {
        "subject_cn": cn(cert.subject),
        "issuer_cn": cn(cert.issuer),
        "not_after": cert.not_valid_after_utc.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def analyze(capture: str, keylog: str | None) -> dict:
    args = ["-r", capture, "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]
    args += ["-o", f"gui.column.format:{COLUMNS}"]
    if keylog:
        args += ["-o", f"tls.keylog_file:{keylog}"]
    for f in FIELDS:
        args += ["-e", f]
    conns: dict[str, dict] = {}
    for line in tshark(*args).splitlines():
        row = dict(zip(FIELDS, line.split("\t"), strict=True))
        stream = row["tcp.stream"]
        src = f"{row['ip.src']}:{row['tcp.srcport']}"
        dst = f"{row['ip.dst']}:{row['tcp.dstport']}"
        if stream not in conns:
            syn_only = int(row["tcp.flags"], 16) & 0x12 == 0x02
            client, server = (src, dst) if syn_only else (dst, src)
            conns[stream] = {
                "client": client, "server": server, "version": None, "cipher_suite": None, "sni": None,
                "resumed": False, "client_handshake": [], "server_handshake": [], "certificate": None,
                "fatal_alert": None, "close_notify": {"client": False, "server": False},
                "application_data": {"client": 0, "server": 0}, "_tls": False, "_sid": {},
            }  # fmt: skip
        c = conns[stream]
        side = "client" if src == c["client"] else "server"
        types = ints(row["tls.handshake.type"])
        if types or row["tls.alert_message.desc"] or row["data.len"]:
            c["_tls"] = True
        for t in types:
            c[f"{side}_handshake"].append(HANDSHAKE.get(t, f"type {t}"))
        if 1 in types:
            c["sni"] = row["tls.handshake.extensions_server_name"] or None
            c["_sid"]["client"] = row["tls.handshake.session_id"].split(",")[0]
        if 2 in types and side == "server":
            supported = ints(row["tls.handshake.extensions.supported_version"])
            version = supported[0] if supported else ints(row["tls.handshake.version"])[0]
            c["version"] = VERSIONS.get(version, hex(version))
            c["cipher_suite"] = row["_ws.col.suite"].split(",")[0]
            if version == 0x0304:
                c["resumed"] = 41 in ints(row["tls.handshake.extension.type"])  # pre_shared_key accepted
            else:
                sid = row["tls.handshake.session_id"].split(",")[0]
                c["resumed"] = bool(sid) and sid == c["_sid"].get("client")
        if row["tls.handshake.certificate"] and side == "server" and c["certificate"] is None:
            c["certificate"] = certificate(row["tls.handshake.certificate"].split(",")[0])
        names = row["_ws.col.alert"].split(",")  # "Unknown CA": the RFC's unknown_ca
        for i, (level, desc) in enumerate(
            zip(ints(row["tls.alert_message.level"]), ints(row["tls.alert_message.desc"]), strict=False)
        ):
            if desc == 0:
                c["close_notify"][side] = True
            elif level == 2 and c["fatal_alert"] is None:
                name = names[i] if i < len(names) else str(desc)
                c["fatal_alert"] = {"from": side, "description": name.strip().lower().replace(" ", "_")}
        c["application_data"][side] += sum(ints(row["data.len"]))
    out = []
    for c in conns.values():
        if not c.pop("_tls"):
            continue
        del c["_sid"]
        if not keylog:
            c["close_notify"] = {"client": None, "server": None}
            c["application_data"] = {"client": None, "server": None}
        out.append(c)
    return {"connections": out}


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: analyze.py CAPTURE [KEYLOG]", file=sys.stderr)
        return 2
    json.dump(analyze(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
