"""TLS handshake analyzer built on tshark's PDML (XML) output and ElementTree.

    python3 analyze.py CAPTURE            eavesdropper's view
    python3 analyze.py CAPTURE KEYLOG     with the endpoints' key log

Each <field> in PDML has its value (show) and the line Wireshark displays (showname),
so names such as "Cipher Suite: TLS_AES_128_GCM_SHA256 (0x1301)" come straight from it.
"""

import argparse
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from cryptography import x509
from cryptography.x509.oid import NameOID


def displayed_name(showname):
    """'Description: Unknown CA (48)' -> 'Unknown CA'."""
    text = showname.split(": ", 1)[-1]
    return re.sub(r"\s*\([0-9a-fx]+\)\s*$", "", text)


def camel(words):
    return "".join(w[:1].upper() + w[1:] for w in words.split())


class Certificate:
    def __init__(self, der):
        self.cert = x509.load_der_x509_certificate(der)

    @staticmethod
    def _cn(name):
        found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return found[0].value if found else None

    def as_dict(self):
        return {
            "subject_cn": self._cn(self.cert.subject),
            "issuer_cn": self._cn(self.cert.issuer),
            "not_after": self.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class Handshake:
    """One handshake message: a PDML element with a tls.handshake.type child."""

    SPECIAL = {"End of Early Data": "EndOfEarlyData", "Key Update": "KeyUpdate",
               "Hello Retry Request": "ServerHello"}  # RFC 8446 4.1.4: an HRR is a ServerHello

    def __init__(self, element):
        self.element = element
        type_field = element.find("field[@name='tls.handshake.type']")
        self.type = int(type_field.get("show"))
        label = displayed_name(type_field.get("showname"))
        self.name = self.SPECIAL.get(label) or camel(label)

    def all(self, name):
        return [f for f in self.element.iter("field") if f.get("name") == name]

    def show(self, name):
        found = self.all(name)
        return found[0].get("show") if found else None


class Connection:
    def __init__(self, client, server):
        self.client = client
        self.server = server
        self.is_tls = False
        self.version = None
        self.cipher_suite = None
        self.sni = None
        self.resumed = False
        self.messages = {"client": [], "server": []}
        self.certificate = None
        self.fatal_alert = None
        self.close_notify = {"client": False, "server": False}
        self.data_bytes = {"client": 0, "server": 0}
        self.offered_session = None

    def side_of(self, src):
        return "client" if src == self.client else "server"

    def on_handshake(self, side, hs):
        self.is_tls = True
        self.messages[side].append(hs.name)
        if hs.type == 1:
            self.sni = hs.show("tls.handshake.extensions_server_name")
            self.offered_session = hs.show("tls.handshake.session_id")
        elif hs.type == 2:
            supported = hs.show("tls.handshake.extensions.supported_version")
            code = int(supported or hs.show("tls.handshake.version"), 16)
            self.version = "TLS 1.%d" % (code - 0x0301)
            self.cipher_suite = displayed_name(hs.all("tls.handshake.ciphersuite")[0].get("showname"))
            if code >= 0x0304:
                self.resumed = "41" in [f.get("show") for f in hs.all("tls.handshake.extension.type")]
            else:
                sid = hs.show("tls.handshake.session_id")
                self.resumed = bool(sid) and sid == self.offered_session
        elif hs.type == 11 and side == "server" and self.certificate is None:
            certs = hs.all("tls.handshake.certificate")
            if certs:
                self.certificate = Certificate(bytes.fromhex(certs[0].get("value"))).as_dict()

    def on_alert(self, side, level, description, label):
        self.is_tls = True
        if description == 0:
            self.close_notify[side] = True
        elif level == 2 and self.fatal_alert is None:
            self.fatal_alert = {"from": side, "description": label.lower().replace(" ", "_")}

    def report(self, with_keys):
        return {
            "client": self.client, "server": self.server, "version": self.version,
            "cipher_suite": self.cipher_suite, "sni": self.sni, "resumed": self.resumed,
            "client_handshake": self.messages["client"], "server_handshake": self.messages["server"],
            "certificate": self.certificate, "fatal_alert": self.fatal_alert,
            "close_notify": self.close_notify if with_keys else {"client": None, "server": None},
            "application_data": self.data_bytes if with_keys else {"client": None, "server": None},
        }


class Analyzer:
    def __init__(self, capture, keylog=None):
        self.capture = capture
        self.keylog = keylog
        self.connections = {}

    def pdml(self):
        cmd = ["tshark", "-r", self.capture, "-n", "-T", "pdml", "-Y", "tcp"]
        if self.keylog:
            cmd += ["-o", "tls.keylog_file:" + self.keylog]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
        return ET.fromstring(proc.stdout)

    @staticmethod
    def field(proto, name):
        f = proto.find(".//field[@name='%s']" % name)
        return None if f is None else f.get("show")

    def run(self):
        for packet in self.pdml().iter("packet"):
            protos = {}
            for proto in packet.findall("proto"):
                protos.setdefault(proto.get("name"), []).append(proto)
            if "tcp" not in protos or "ip" not in protos:
                continue
            ip, tcp = protos["ip"][0], protos["tcp"][0]
            src = "%s:%s" % (self.field(ip, "ip.src"), self.field(tcp, "tcp.srcport"))
            dst = "%s:%s" % (self.field(ip, "ip.dst"), self.field(tcp, "tcp.dstport"))
            stream = self.field(tcp, "tcp.stream")
            if stream not in self.connections:
                syn_ack = int(self.field(tcp, "tcp.flags"), 16) & 0x12 == 0x12
                self.connections[stream] = Connection(dst, src) if syn_ack else Connection(src, dst)
            conn = self.connections[stream]
            side = conn.side_of(src)
            for tls in protos.get("tls", []):
                self.read_tls(conn, side, tls)
            if conn.is_tls:  # decrypted application data: tshark's "data" (a field of the packet)
                for f in packet.iter("field"):
                    if f.get("name") == "data.len":
                        conn.data_bytes[side] += int(f.get("show"))
        return [c.report(self.keylog is not None) for c in self.connections.values() if c.is_tls]

    @staticmethod
    def read_tls(conn, side, tls):
        for element in tls.iter("field"):
            if element.find("field[@name='tls.handshake.type']") is not None:
                conn.on_handshake(side, Handshake(element))
            level = element.find("field[@name='tls.alert_message.level']")
            desc = element.find("field[@name='tls.alert_message.desc']")
            if level is not None and desc is not None:
                conn.on_alert(side, int(level.get("show")), int(desc.get("show")),
                              displayed_name(desc.get("showname")))


def main():
    parser = argparse.ArgumentParser(description="Read the TLS handshakes of a capture.")
    parser.add_argument("capture")
    parser.add_argument("keylog", nargs="?", default=None, help="SSLKEYLOGFILE of the endpoints")
    args = parser.parse_args()
    try:
        connections = Analyzer(args.capture, args.keylog).run()
    except subprocess.CalledProcessError as e:
        sys.stderr.write(e.stderr.decode(errors="replace"))
        return 1
    json.dump({"connections": connections}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
