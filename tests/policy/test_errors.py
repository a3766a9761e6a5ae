"""Every way a policy file can be wrong is an error naming the file, line, column and key path."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from attest.errors import PolicyError
from attest.policy import load_policy
from tests.policy.helpers import (
    AK_HEX,
    FULL,
    NOT_AN_AK,
    OFFLINE,
    ZERO,
    edit,
    line_of,
    load_text,
    rsa_pem,
    sealed_values_yaml,
    write,
)

SEALED = f"  kind: pcr\n  sealed_values:\n{sealed_values_yaml()}\n"


class Broken(NamedTuple):
    """A policy text, the edit that breaks it, and where the error must point."""

    base: str
    old: str
    new: str
    marker: str  # a text on the line the error must name (in the edited text)
    path: str
    says: str


def _case(id_: str, base: str, old: str, new: str, marker: str, path: str,
          says: str) -> object:
    return pytest.param(Broken(base, old, new, marker, path, says), id=id_)


CASES = [
    # unknown keys, at every depth
    _case("unknown-top-level-key", FULL, "id: prod-web\n", "id: prod-web\ncolour: blue\n",
          "colour:", "colour", "unknown key; allowed here: artifacts, ek_roots"),
    _case("unknown-key-in-a-section", FULL, "  max_age: 300s", "  max_agee: 300s",
          "max_agee", "freshness.max_agee", "unknown key"),
    _case("unknown-key-in-a-rule", FULL, '    hosts: ["*"]', '    hosts: ["*"]\n    user: x',
          "user: x", "rules[0].user", "unknown key"),
    _case("unknown-key-in-a-trusted-ak", OFFLINE, "  - host: web-1", "  - host: web-1\n    os: x",
          "os: x", "trusted_aks[0].os", "unknown key"),
    _case("unknown-key-in-key-policy", FULL, "  kind: pcr", "  kind: pcr\n  pcrs: [1]",
          "pcrs: [1]", "key_policy.pcrs", "unknown key"),
    _case("unknown-key-deep-in-reference", FULL, "    - name: /usr/bin/backup",
          "    - name: /usr/bin/backup\n      nmae: x", "nmae", "reference.runtime[0].nmae",
          "unknown key"),
    _case("key-of-another-kind", FULL, "  kind: pcr", "  kind: authorize",
          "sealed_values:", "key_policy.sealed_values", "not used with kind: authorize"),
    _case("trusted-aks-with-store-enrollment", OFFLINE, "enrollment: policy",
          "enrollment: store", "trusted_aks:", "trusted_aks", "only read with enrollment: policy"),
    # wrong types
    _case("number-for-a-string", FULL, "id: prod-web", "id: 42", "id: 42", "id",
          "expected a string, found the number '42'"),
    _case("string-for-a-number", FULL, "  runtime: 15", '  runtime: "15"', "runtime:",
          "pcrs.runtime", "expected a whole number 0-23, found the string '15'"),
    # A PCR that TPM2_PCR_Reset clears from locality 0 (16, 23) holds no history: any
    # local user empties it within one boot, invisible to boot epochs and deny_reset.
    _case("resettable-runtime-pcr", FULL, "  runtime: 15", "  runtime: 16", "runtime:",
          "pcrs.runtime", "PCR 16 can be reset"),
    _case("resettable-sealed-pcr", FULL, "  sealed: [0, 1, 2, 3, 4, 5, 6, 7]",
          "  sealed: [0, 1, 2, 3, 4, 5, 6, 7, 23]", "sealed:", "pcrs.sealed",
          "PCR 23 can be reset"),
    _case("number-out-of-range", FULL, "  runtime: 15", "  runtime: 24", "runtime:",
          "pcrs.runtime", "expected a whole number 0-23"),
    _case("octal-looking-number", FULL, "  runtime: 15", "  runtime: 010", "runtime:",
          "pcrs.runtime", "expected a whole number 0-23"),
    _case("quoted-boolean", FULL, "  single_use: true", '  single_use: "yes"', "single_use",
          "artifacts.single_use", "expected true or false"),
    _case("scalar-for-a-list", FULL, "  sealed: [0, 1, 2, 3, 4, 5, 6, 7]", "  sealed: 0",
          "sealed:", "pcrs.sealed", "expected a list of PCR numbers, found the number"),
    _case("list-for-a-section", FULL, "lineage:\n  max_depth: 3", "lineage: [3]", "lineage:",
          "lineage", "expected a mapping, found a list"),
    _case("empty-section", FULL, "lineage:\n  max_depth: 3", "lineage:", "lineage:",
          "lineage", "expected a mapping, found nothing (null)"),
    _case("unknown-choice", FULL, "  nonce: required", "  nonce: sometimes", "nonce:",
          "freshness.nonce", "expected one of required | optional | forbidden"),
    _case("unknown-bank", FULL, "  bank: sha256", "  bank: md5", "bank: md5", "pcrs.bank",
          "expected one of sha1 | sha256 | sha384 | sha512"),
    _case("wrong-version", FULL, "version: 1", "version: 2", "version:", "version",
          "reads policy version 1 only"),
    _case("negative-depth", FULL, "  max_depth: 3", "  max_depth: -1", "max_depth",
          "lineage.max_depth", "expected a whole number 0 or more"),
    _case("bad-policy-id", FULL, "id: prod-web", "id: prod web", "id:", "id",
          "a policy id is 1-128 letters"),
    # durations
    _case("duration-in-words", FULL, "  max_age: 300s", "  max_age: soon", "max_age",
          "freshness.max_age", "expected a duration like 90s, 5m"),
    _case("duration-with-a-space", FULL, "  max_age: 300s", "  max_age: 5 minutes", "max_age",
          "freshness.max_age", "expected a duration"),
    _case("sexagesimal-duration", FULL, "  max_age: 300s", "  max_age: 1:30", "max_age",
          "freshness.max_age", "expected a duration"),
    _case("negative-duration", FULL, "  max_lifetime: 600s", "  max_lifetime: -5",
          "max_lifetime", "artifacts.max_lifetime", "expected a duration"),
    _case("zero-max-age", FULL, "  max_age: 300s", "  max_age: 0s", "max_age",
          "freshness.max_age", "must be longer than 0s"),
    _case("unit-twice", FULL, "  clock_skew: 30s", "  clock_skew: 1m1m", "clock_skew",
          "freshness.clock_skew", "a unit appears twice"),
    # hex
    _case("not-hex", FULL, f'"2": "{ZERO}"', '"2": "zz"', '"2":', "key_policy.sealed_values[2]",
          "expected a sha256 PCR value as hex digits; 'zz' is not hex"),
    _case("hex-of-the-wrong-size", FULL, f'"2": "{ZERO}"', '"2": "abcd"', '"2":',
          "key_policy.sealed_values[2]", "of 32 bytes (64 hex digits), found 2 bytes"),
    _case("hex-with-0x", OFFLINE, f'ak_public: "{AK_HEX}"', f'ak_public: "0x{AK_HEX}"',
          "ak_public", "trusted_aks[0].ak_public", "without a 0x prefix"),
    _case("bad-reference-digest", FULL, f'digests: ["{"ab" * 32}"]', 'digests: ["abcd"]',
          "digests:", "reference.runtime[0].digests", "is not a sha256 digest"),
    _case("not-an-ak", OFFLINE, f'ak_public: "{AK_HEX}"',
          f'ak_public: "{NOT_AN_AK.marshal_tpm2b().hex()}"',
          "ak_public", "trusted_aks[0].ak_public", "not an AK's public area: AK lacks RESTRICTED"),
    _case("bad-qualified-name", OFFLINE, f'ak_qualified_name: "000b{"cd" * 32}"',
          'ak_qualified_name: "000bcd"', "ak_qualified_name", "trusted_aks[0].ak_qualified_name",
          "not a TPM name"),
    # duplicate keys
    _case("duplicate-top-level-key", FULL, "id: prod-web\n", "id: prod-web\nid: other\n",
          "id: other", "id", "duplicate key; first written on line 2"),
    _case("duplicate-nested-key", FULL, "  max_age: 300s", "  max_age: 300s\n  max_age: 5s",
          "max_age: 5s", "freshness.max_age", "duplicate key; first written on line"),
    _case("duplicate-in-reference", FULL, "    - name: /usr/bin/backup",
          "    - name: /usr/bin/backup\n      name: /bin/sh", "name: /bin/sh",
          "reference.runtime[0].name", "duplicate key"),
    _case("pcr-given-twice", FULL, f'"2": "{ZERO}"', f'"2": "{ZERO}"\n    2: "{ZERO}"',
          f'    2: "{ZERO}"', "key_policy.sealed_values[2]", "PCR 2 is given twice"),
    _case("pcr-listed-twice", FULL, "  sealed: [0, 1, 2, 3, 4, 5, 6, 7]",
          "  sealed: [0, 1, 2, 3, 4, 5, 6, 7, 7]", "sealed:", "pcrs.sealed[8]",
          "PCR 7 is listed twice"),
    # missing and inconsistent
    _case("missing-version", FULL, "version: 1\n", "", "id: prod-web", "version",
          "required but missing"),
    _case("missing-rules", FULL, FULL[FULL.index("rules:"):], "", "version: 1", "rules",
          "required but missing"),
    _case("missing-key-policy", FULL, f"key_policy:\n{SEALED}", "", "version: 1", "key_policy",
          "required but missing"),
    _case("missing-rule-field", FULL, '    hosts: ["*"]\n', "", "subjects:", "rules[0].hosts",
          "required but missing"),
    _case("missing-host", OFFLINE, "  - host: web-1\n    ak_public", "  - ak_public",
          "- ak_public", "trusted_aks[0].host", "required but missing"),
    _case("missing-sealed-values", FULL, SEALED, "  kind: pcr\n", "key_policy:",
          "key_policy.sealed_values", "required but missing"),
    _case("sealed-value-missing", FULL, f'    "5": "{ZERO}"\n', "", "sealed_values:",
          "key_policy.sealed_values", "no value for sealed PCR 5"),
    _case("sealed-value-not-sealed", FULL, "  sealed: [0, 1, 2, 3, 4, 5, 6, 7]",
          "  sealed: [0, 1, 2, 3, 4, 5, 6]", '"7":', "key_policy.sealed_values[7]",
          "PCR 7 is not in pcrs.sealed"),
    _case("runtime-pcr-sealed", FULL, "  runtime: 15", "  runtime: 7", "runtime: 7",
          "pcrs.runtime", "PCR 7 is both sealed and the runtime PCR"),
    # Red team after issue 10 item 1: a runtime PCR software can reset lets a host run an
    # unapproved command (measured), reset the PCR and measure a clean history again.
    _case("runtime-pcr-resettable-23", FULL, "  runtime: 15", "  runtime: 23", "runtime: 23",
          "pcrs.runtime", "PCR 23 can be reset"),
    _case("policy-enrollment-without-aks", FULL, "enrollment: store", "enrollment: policy",
          "enrollment:", "trusted_aks", "required with enrollment: policy"),
    _case("empty-trusted-aks", FULL, "enrollment: store", "enrollment: policy\ntrusted_aks: []",
          "trusted_aks:", "trusted_aks", "needs at least one trusted AK"),
    _case("same-ak-twice", OFFLINE, "  - host: web-1\n",
          f'  - host: web-2\n    ak_public: "{AK_HEX}"\n  - host: web-1\n', "host: web-1",
          "trusted_aks[1]", "the same AK as on line"),
    _case("missing-ek-root", FULL, "[roots/, extra-root.pem]", "[roots/, absent/]",
          "ek_roots:", "ek_roots[1]", "absent does not exist"),
    _case("reference-in-another-bank", FULL, "reference:\n", "reference:\n  bank: sha1\n",
          "bank: sha1", "reference.bank", "reference values in sha1 but the quote covers sha256"),
    _case("reference-unknown-key", FULL, "reference:\n  runtime:", "reference:\n  boot: 3\n  x:",
          "  x:", "reference.x", "unknown key(s) x"),
    _case("reference-section-shape", FULL, "reference:\n  runtime:",
          "reference:\n  boot: 3\n  runtime:",
          "boot: 3", "reference.boot", "must be a mapping"),
    # rules
    _case("no-rules", FULL, FULL[FULL.index("rules:"):], "rules: []\n", "rules:", "rules",
          "at least one rule is needed"),
    _case("unclosed-bracket", FULL, '["/usr/bin/backup --full *"]', '["/usr/bin/backup [--full"]',
          "argv:", "rules[0].argv[0]", "unclosed '['"),
    _case("empty-pattern", FULL, '["deploy-bot"]', '[""]', "subjects:", "rules[0].subjects[0]",
          "an empty pattern"),
    _case("empty-pattern-list", FULL, 'actions: ["exec"]', "actions: []", "actions:",
          "rules[0].actions", "an empty list matches nothing"),
    _case("pattern-not-a-string", FULL, 'hosts: ["*"]', "hosts: [7]", "hosts:",
          "rules[0].hosts[0]", "expected a string"),
    # YAML the policy refuses
    _case("alias", FULL, 'argv: ["/usr/bin/backup --full *"]\n    hosts: ["*"]',
          'argv: &any ["*"]\n    hosts: *any', "hosts: *any", "rules[0].hosts",
          "aliases (*any) are not allowed"),
    _case("tag", FULL, "id: prod-web", "id: !!python/name:os.system x", "id:", "id",
          "the YAML tag tag:yaml.org,2002:python/name:os.system is not allowed"),
    _case("merge-key", FULL, "  max_age: 300s", "  <<: {max_age: 5}", "<<", "freshness[<<]",
          "is not allowed"),
    _case("not-yaml", FULL, "  max_age: 300s", "  max_age: [300s", "clock_skew", "",
          "not valid YAML"),
    _case("bad-authority", FULL, SEALED, "  kind: authorize\n  authority: not a key\n",
          "authority:", "key_policy.authority", "the authority key is not a PEM public key"),
    _case("missing-authority-file", FULL, SEALED, "  kind: authorize\n  authority_file: a.pem\n",
          "authority_file", "key_policy.authority_file", "cannot read"),
    _case("no-authority", FULL, SEALED, "  kind: authorize\n", "key_policy:", "key_policy",
          "needs the authority's public key"),
]


@pytest.mark.parametrize("case", CASES)
def test_error_names_the_line_and_key_path(tmp_path: Path, case: Broken) -> None:
    text = edit(case.base, case.old, case.new)
    line = line_of(text, case.marker)
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, text)
    error = caught.value
    assert (error.line, error.path) == (line, case.path), error.message
    assert case.says in error.detail, error.message
    assert error.message.startswith(f"{tmp_path / 'policy.yaml'}:{line}:{error.column}: ")
    assert error.column is not None and error.column >= 1


def test_the_message_reads_file_line_column_path_detail(tmp_path: Path) -> None:
    text = edit(FULL, "  max_age: 300s", "  max_age: soon")
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    line = line_of(text, "max_age")
    assert caught.value.message == (f"{path}:{line}:12: freshness.max_age: expected a duration "
                                    "like 90s, 5m, 1h30m, 250ms or whole seconds (90), "
                                    "not 'soon'")


def test_unknown_key_suggests_the_closest_name(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, edit(FULL, "  max_age: 300s", "  max_agee: 300s"))
    assert caught.value.hint == "did you mean max_age?"


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="holds no policy") as caught:
        load_text(tmp_path, "# nothing\n")
    assert caught.value.line == 1


def test_two_documents_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not valid YAML") as caught:
        load_text(tmp_path, FULL + "---\nversion: 1\n")
    assert caught.value.line == line_of(FULL + "---\n", "---")


def test_a_weak_authority_key_is_refused(tmp_path: Path) -> None:
    pem = rsa_pem(1024).decode()
    block = "\n".join(f"    {line}" for line in pem.splitlines())
    text = edit(FULL, SEALED, f"  kind: authorize\n  authority: |\n{block}\n")
    with pytest.raises(PolicyError, match="at least 2048 bits") as caught:
        load_text(tmp_path, text)
    assert caught.value.line == line_of(text, "authority: |")
