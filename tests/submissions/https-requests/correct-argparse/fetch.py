"""Fetch a URL over HTTPS, trusting one CA file."""
import argparse
import sys

import requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("cafile")
    args = parser.parse_args()
    try:
        with requests.get(args.url, verify=args.cafile, timeout=(5, 10), allow_redirects=True) as r:
            print(f"GET {args.url} -> {r.url} ({len(r.history)} redirect(s))", file=sys.stderr)
            lines = [str(r.status_code), r.headers.get("content-type", ""), r.text]
    except requests.exceptions.RequestException as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
