"""`spire-server entry show` as the sandbox's spire-server pods answer it: the real CLI's output, byte for byte."""

from __future__ import annotations

import json

import pytest

from sandbox.emulator import registration, spire, spirecli

TD = "default.default.mesh.local"
PARENT = f"spiffe://{TD}/spire/agent/k8s_psat/example-cluster/node-uid"


def entry(path: str, uid: str, hint: str = "default", extra: tuple[str, ...] = ()) -> dict:
    made = spire.Entry("csid", uid, f"spiffe://{TD}{path}", PARENT, (f"k8s:pod-uid:{uid}", *extra), hint=hint)
    return registration.entry_json(made, f"example-cluster.{uid}", 1767225600)


KV = entry("/ns/kong-mesh-demo/sa/default", "b-kv", extra=("k8s:ns:kong-mesh-demo",))
APP = entry("/ns/kong-mesh-demo/sa/default", "a-app")
OIDC = entry("/ns/spire/sa/oidc", "c-oidc", hint="oidc-discovery-provider")
STATE = {"serving": True, "entries": [OIDC, KV, APP]}


def test_json_output_is_protojson_through_go_encoding_json():
    """cliprinter/internal/protojson: UseProtoNames + EmitUnpopulated, nulls removed, json.Marshal (sorted keys,
    compact), Encoder's newline; int64 fields (expires_at, revision_number, created_at) are strings in protojson."""
    out = spirecli.run(["entry", "show", "-output", "json", "-spiffeID", f"spiffe://{TD}/ns/spire/sa/oidc"], STATE)
    assert out == ('{"entries":[{"admin":false,"created_at":"1767225600","dns_names":[],"downstream":false,'
                   '"expires_at":"0","federates_with":[],"hint":"oidc-discovery-provider","id":"example-cluster.c-oidc",'
                   '"jwt_svid_ttl":0,"parent_id":{"path":"/spire/agent/k8s_psat/example-cluster/node-uid",'
                   f'"trust_domain":"{TD}"}},"revision_number":"0","selectors":[{{"type":"k8s","value":"pod-uid:c-oidc"}}],'
                   f'"spiffe_id":{{"path":"/ns/spire/sa/oidc","trust_domain":"{TD}"}},"store_svid":false,'
                   '"x509_svid_ttl":0}],"next_page_token":""}\n')


def test_entries_are_sorted_as_sort_types_entries_sorts_them():
    # pkg/common/util/sort.go: SPIFFE ID, parent ID, TTLs, then selector count and selectors
    listed = json.loads(spirecli.run(["entry", "show", "-output=json"], STATE))["entries"]
    assert [e["id"] for e in listed] == ["example-cluster.a-app", "example-cluster.b-kv", "example-cluster.c-oidc"]


def test_filters_are_the_servers():
    def ids(*flags: str) -> list[str]:
        return [e["id"] for e in json.loads(spirecli.run(["entry", "show", "-output", "json", *flags], STATE))["entries"]]

    assert ids("-selector", "k8s:ns:kong-mesh-demo") == ["example-cluster.b-kv"]  # superset by default
    assert ids("-selector", "k8s:pod-uid:a-app", "-matchSelectorsOn", "exact") == ["example-cluster.a-app"]
    assert ids("-hint", "oidc-discovery-provider") == ["example-cluster.c-oidc"]
    assert ids("-parentID", PARENT) == ["example-cluster.a-app", "example-cluster.b-kv", "example-cluster.c-oidc"]
    assert ids("-downstream") == []  # show.go always filters by downstream, false unless the flag is given
    assert ids("-entryID", "example-cluster.b-kv") == ["example-cluster.b-kv"]


def test_pretty_output_is_print_entries():
    out = spirecli.run(["entry", "show", "-selector", "k8s:ns:kong-mesh-demo"], STATE)
    assert out == ("Found 1 entry\n"
                   "Entry ID                : example-cluster.b-kv\n"
                   f"SPIFFE ID               : spiffe://{TD}/ns/kong-mesh-demo/sa/default\n"
                   f"Parent ID               : {PARENT}\n"
                   "Revision                : 0\n"
                   "X509-SVID TTL           : default\n"
                   "JWT-SVID TTL            : default\n"
                   "Selector                : k8s:ns:kong-mesh-demo\n"
                   "Selector                : k8s:pod-uid:b-kv\n"
                   "Hint                    : default\n\n")


def test_a_server_that_does_not_serve_fails_the_dial_of_its_socket():
    with pytest.raises(spirecli.Failed) as failed:
        spirecli.run(["entry", "show", "-output", "json"], {"serving": False, "entries": [KV]})
    assert failed.value.code == 1
    assert str(failed.value) == ('Error: error fetching entries: rpc error: code = Unavailable desc = connection error: '
                                 'desc = "transport: Error while dialing: dial unix /tmp/spire-server/private/api.sock: '
                                 'connect: connection refused"')


def test_unmodelled_commands_fail_like_an_unknown_command():
    # mitchellh/cli v1.1.5 cli.go Run: no such command -> help of the parent on stderr, exit 127
    with pytest.raises(spirecli.Failed) as failed:
        spirecli.run(["entry", "create", "-spiffeID", "spiffe://x/y"], STATE)
    assert failed.value.code == 127
    assert str(failed.value).startswith("Usage: spire-server [--version] [--help] <command> [<args>]\n\n"
                                        "Available commands are:\n    agent                \n")
    assert "    run                  Runs the server\n" in str(failed.value)


def test_unknown_flags_and_formats_fail_as_go_flag_parsing_does():
    with pytest.raises(spirecli.Failed, match=r"^flag provided but not defined: -bogus\nUsage of entry show:\n"):
        spirecli.run(["entry", "show", "-bogus"], STATE)
    with pytest.raises(spirecli.Failed, match='invalid value "yaml" for flag -output: bad formatter flag: unknown '
                                              'format option: "yaml"'):
        spirecli.run(["entry", "show", "-output", "yaml"], STATE)


def test_html_characters_are_escaped_as_go_does():
    assert spirecli.go_json({"b": "<&>", "a": 1}) == '{"a":1,"b":"\\u003c\\u0026\\u003e"}'
