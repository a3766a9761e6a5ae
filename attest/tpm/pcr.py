"""Reading and extending PCRs."""

from __future__ import annotations

from tpm2_pytss import ESYS_TR, TPML_DIGEST_VALUES, TPML_PCR_SELECTION, TPMT_HA, TPMU_HA
from tpm2_pytss.constants import TPM2_CAP

from attest.errors import UsageError
from attest.evidence.pcrs import DIGEST_SIZES, HASH_ALGS, HASH_NAMES, PCRSelection, digest
from attest.tpm.device import TPM


def to_tpml(selection: PCRSelection) -> TPML_PCR_SELECTION:
    tpml, _ = TPML_PCR_SELECTION.unmarshal(selection.marshal())
    return tpml


def active_banks(tpm: TPM) -> list[str]:
    """Banks with at least one PCR allocated, by name (unknown algorithms skipped).

    Asked once per connection: an allocation changes only at the next TPM2_Startup.
    """
    if tpm.banks is None:
        _, data = tpm.call("reading the PCR banks", tpm.esapi.get_capability,
                           TPM2_CAP.PCRS, 0, 1)
        tpm.banks = tuple(HASH_NAMES[int(sel.hash)] for sel in data.data.assignedPCR
                          if any(bytes(sel.pcrSelect)[: sel.sizeofSelect])
                          and int(sel.hash) in HASH_NAMES)
    return list(tpm.banks)


def read_pcrs(tpm: TPM, selection: PCRSelection) -> dict[tuple[str, int], bytes]:
    """Values of every selected PCR; TPM2_PCR_Read returns at most 8 a call, so loop."""
    values: dict[tuple[str, int], bytes] = {}
    remaining = list(selection)
    while remaining:
        pending = PCRSelection.from_pairs(remaining)
        _, returned_sel, digests = tpm.call("reading PCRs", tpm.esapi.pcr_read, to_tpml(pending))
        got = _expand(returned_sel)
        if not got:
            missing = ", ".join(f"{b}:{i}" for b, i in remaining)
            raise UsageError(f"the TPM has no PCR {missing}",
                             hint="check the bank with `attest pcr read`")
        for key, value in zip(got, digests, strict=True):
            values[key] = bytes(value)
        remaining = [key for key in remaining if key not in values]
    return values


def extend(tpm: TPM, index: int, digests: dict[str, bytes]) -> None:
    """Extend ``index`` in every bank named in ``digests``."""
    if not 0 <= index < 24:
        raise UsageError(f"PCR index {index} out of range 0-23")
    entries = []
    for bank, value in digests.items():
        if len(value) != DIGEST_SIZES[bank]:
            raise UsageError(f"a {bank} digest is {DIGEST_SIZES[bank]} bytes, not {len(value)}")
        entries.append(TPMT_HA(hashAlg=HASH_ALGS[bank], digest=TPMU_HA(**{bank: value})))
    values = TPML_DIGEST_VALUES(entries)
    handle = ESYS_TR.parse(f"pcr{index}")
    tpm.call(f"extending PCR {index}", tpm.esapi.pcr_extend, handle, values)


def extend_data(tpm: TPM, index: int, data: bytes) -> dict[str, bytes]:
    """Extend H(data) into every active bank; returns the digests extended."""
    digests = {bank: digest(bank, data) for bank in active_banks(tpm)}
    extend(tpm, index, digests)
    return digests


def _expand(tpml: TPML_PCR_SELECTION) -> list[tuple[str, int]]:
    """(bank, index) of every PCR a TPML_PCR_SELECTION selects, in order; read from its
    marshalled bytes (count, then hash, sizeofSelect, pcrSelect per bank): walking the
    tpm2-pytss objects costs more than the PCR_Read they came from."""
    data = bytes(tpml.marshal())
    keys: list[tuple[str, int]] = []
    at = 4
    for _ in range(int.from_bytes(data[0:4], "big")):
        bank = HASH_NAMES.get(int.from_bytes(data[at:at + 2], "big"))
        size = data[at + 2]
        bitmap = data[at + 3:at + 3 + size]
        at += 3 + size
        if bank is not None:
            keys.extend((bank, index) for index in range(len(bitmap) * 8)
                        if bitmap[index // 8] & (1 << (index % 8)))
    return keys
