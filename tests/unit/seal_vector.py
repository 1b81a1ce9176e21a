#!/usr/bin/env python3
"""Seals argv[3] with context argv[2] under the base64 key argv[1] in shopd's
sealed form (include/shopd/seal.h), with Python's `cryptography` (not
shopd's code), so the unit test can check that shopd opens what another
implementation of the format made. Exit 3 when `cryptography` is missing."""
import base64
import hashlib
import os
import sys

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:
    sys.exit(3)

key = base64.b64decode(sys.argv[1])
kid = hashlib.sha256(b"shopd-seal-kid" + key).hexdigest()[:8]
nonce = os.urandom(12)
ct = AESGCM(key).encrypt(nonce, sys.argv[3].encode(), sys.argv[2].encode())
print("seal1.%s.%s" % (kid, base64.urlsafe_b64encode(nonce + ct).decode().rstrip("=")))
