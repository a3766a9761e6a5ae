"""The fuzzing suite: every parser of outside input, and the whole verifier, under mutation.

What is fuzzed, and the one rule each test checks
-------------------------------------------------
For ANY input, a parser returns a result or raises a subclass of
:class:`attest.errors.AttestError` (the few pure helpers documented to raise
``ValueError`` -- ``attest.strictjson.loads`` and ``attest.policy.values`` -- may raise
that instead); the verifier returns a :class:`~attest.decision.Decision` that is a
denial with a real reason (never ``internal_error``, which means an exception escaped a
check) and never accepts mutated evidence unless the mutation is semantically void.

- ``test_parsers.py``: strict JSON; the JWS/artifact parser; TCG PC Client boot logs and
  CEL runtime logs (through ``parse_log``); TPMS_ATTEST, TPM2B_PUBLIC/TPMT_PUBLIC,
  TPMT_SIGNATURE, TPML_PCR_SELECTION and tpm2-tools PCR files; EK certificates (through
  ``parse_ek_certificate``, the EK profile and chain validation, which touch the
  extensions and the key cryptography parses lazily) and certificate files
  (``attest.certfiles``); the policy YAML loader; approvals; audit proofs, tree heads
  (signed notes) and verifier keys; durations and PCR selections.
- ``test_verifier.py``: real artifacts issued ONCE per module on a swtpm of the module's
  own (two hosts), mutated structure-aware (bytes of the compact text, of the decoded
  header, payload, signature and each base64 evidence field; JSON field edits -- types,
  lengths, nesting, unicode, huge numbers, missing and extra members; parts swapped
  between artifacts of two hosts), then verified against real SQLite stores. Unsigned
  mutants must be denied unless byte-identical once stripped; mutants re-signed inside
  the TPM (the signature holds) may pass only if their claims are unchanged.

Seeds
-----
``tests.conftest.VECTORS`` (``../shared/vectors``: eventlogs/, quotes/, ekcerts/,
merkle/), read in place, plus documents made by the project itself (a rendered policy,
an approval, signed tree heads and proofs, CEL logs) and, for the verifier, the
artifacts issued in the module fixture. Mutations (``mutations.py``) are byte flips,
interesting integers written over length fields (big- and little-endian, 16/32 bit),
truncation, deletion, insertion and splicing between seeds; JSON mutations edit one
value of the decoded tree.

Budget
------
Every test uses :data:`tests.fuzz.budget.FUZZ`: ``ATTEST_FUZZ_EXAMPLES`` examples per test
(default 200; the CLI test a third of that), which keeps the whole suite near 20 s on
two idle cores; no deadline; derandomized so CI runs the same inputs every time and a
failure reproduces (hypothesis prints the input). Run it longer locally, with fresh randomness::

    ATTEST_FUZZ_EXAMPLES=5000 ATTEST_FUZZ_RANDOM=1 \\
        PYTHONPATH=$PWD .venv/bin/python -m pytest -q -p no:cacheprovider tests/fuzz

A crash found this way is fixed in the parser and kept as an ``@example``.
"""
