#!/usr/bin/env python3
"""Starter for fetch.py URL CAFILE: see README.md. The lecture's example is your start:

    import requests
    r = requests.get('https://www.camosun.ca')
    print(r.status_code)
    print(r.text)
"""

import sys

print('fetch: not written yet', file=sys.stderr)
sys.exit(1)
