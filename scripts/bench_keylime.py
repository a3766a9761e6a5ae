"""Time Keylime's quote check; run by scripts/bench inside its throwaway keylime venv.

Usage: bench_keylime.py FOLDER BATCHES BATCH_SIZE

FOLDER holds one subfolder per AK (ak.pem, quote.msg, quote.sig, quote.pcrs, nonce).
For each, `keylime.tpm.tpm_util.checkquote` and the bare signature verification
inside it are timed in interleaved batches in this process; the per-call time of
each batch (ns) is printed as JSON on stdout. This file must not import attest.
"""

from __future__ import annotations

import gc
import json
import struct
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from keylime.tpm import tpm_util  # type: ignore[import-not-found]

TPM_ALG_ECDSA = 0x0018
TPM_ALG_RSASSA = 0x0014


def bare_verifier(pem: bytes, message: bytes, sigblob: bytes) -> Callable[[], None]:
    """The signature check alone: key, signature and padding prepared outside the timing."""
    key = serialization.load_pem_public_key(pem)
    sig_alg = struct.unpack_from(">H", sigblob)[0]
    if sig_alg == TPM_ALG_ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
        r_size = struct.unpack_from(">H", sigblob, 4)[0]
        r = sigblob[6 : 6 + r_size]
        s_size = struct.unpack_from(">H", sigblob, 6 + r_size)[0]
        s = sigblob[8 + r_size : 8 + r_size + s_size]
        der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda: key.verify(der, message, ecdsa)
    if sig_alg == TPM_ALG_RSASSA and isinstance(key, rsa.RSAPublicKey):
        size = struct.unpack_from(">H", sigblob, 4)[0]
        signature = sigblob[6 : 6 + size]
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda: key.verify(signature, message, pkcs1, sha256)
    raise ValueError(f"unexpected signature algorithm 0x{sig_alg:04x} for this key")


def time_batches(fns: list[Callable[[], object]], batches: int, size: int) -> list[list[float]]:
    """Per-call ns of each batch, for each function; batches interleaved, order alternating."""
    results: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for batch in range(batches + 1):  # batch 0 warms up
        for i in order if batch % 2 else reversed(order):
            fn = fns[i]
            gc.disable()
            try:
                start = time.perf_counter_ns()
                for _ in range(size):
                    fn()
                elapsed = time.perf_counter_ns() - start
            finally:
                gc.enable()
            if batch:
                results[i].append(elapsed / size)
    return results


def measure(folder: Path, batches: int, size: int) -> dict[str, Any]:
    pem = (folder / "ak.pem").read_bytes()
    message = (folder / "quote.msg").read_bytes()
    sigblob = (folder / "quote.sig").read_bytes()
    pcrblob = (folder / "quote.pcrs").read_bytes()
    # Keylime's nonces are strings; the bench quotes over an ASCII nonce.
    nonce = (folder / "nonce").read_bytes().decode("ascii")

    def keylime() -> Any:
        return tpm_util.checkquote(pem, nonce, sigblob, message, pcrblob, "sha256")

    pcrs = keylime()  # raises unless Keylime accepts the quote
    bare = bare_verifier(pem, message, sigblob)
    bare()
    keylime_ns, bare_ns = time_batches([keylime, bare], batches, size)
    return {"keylime_ns": keylime_ns, "bare_ns": bare_ns, "pcrs_returned": len(pcrs)}


def main(argv: list[str]) -> int:
    folder, batches, size = Path(argv[0]), int(argv[1]), int(argv[2])
    out: dict[str, Any] = {
        "keylime": metadata.version("keylime"),
        "cryptography": metadata.version("cryptography"),
        "aks": {},
    }
    for ak in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            out["aks"][ak.name] = measure(ak, batches, size)
        except Exception as exc:  # noqa: BLE001 (reported to the bench, which goes on)
            out["aks"][ak.name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
