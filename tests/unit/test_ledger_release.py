"""A release's record keeps what its uninstall leaves behind, through the ledger file."""

from __future__ import annotations

from meshid.ledger import AppliedObject, AppliedRelease, Ledger


def test_a_release_record_round_trips_with_its_kept_crds_and_claims(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = Ledger(path=path)
    ledger.record(AppliedObject("v1", "Namespace", "spire", None, True))
    ledger.record(AppliedRelease("spire-crds", "spire", None, "spire.spiffe.io", ("existing.spire.spiffe.io",)))
    ledger.record(AppliedRelease("spire", "spire", None, claims=("spire-data-spire-server-0",)))
    ledger.record(AppliedRelease("spire", "spire", 3))  # the first record of a thing wins: it knows the before
    loaded = Ledger.load(path)
    assert loaded.entries == ledger.entries
    assert loaded.entries[1].crds_before == ("existing.spire.spiffe.io",)
    assert loaded.entries[2].claims == ("spire-data-spire-server-0",) and loaded.entries[2].previous_revision is None
