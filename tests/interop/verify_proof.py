"""Verifies an eBox proof (a JWS) with joserfc, a JOSE library that is not ours.

Usage: python3 verify_proof.py JWKS_FILE PROOF_FILE
Prints the proof's claims as JSON; exits non-zero when the proof does not verify.
"""
import json
import sys

from joserfc import jws
from joserfc.jwk import KeySet

keys = KeySet.import_key_set(json.load(open(sys.argv[1])))
token = open(sys.argv[2]).read().strip()
verified = jws.deserialize_compact(token, keys, algorithms=["EdDSA"])
print(json.dumps(json.loads(verified.payload)))
