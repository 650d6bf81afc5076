#!/usr/bin/env python3
# Forgets to listen: prints a greeting and waits for ever.
import time
print("starting up...", flush=True)
while True:
    time.sleep(1)
