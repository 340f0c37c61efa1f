"""Pushes one transaction with pyntelope 0.8.6 (compression false, its own expiration: UTC now
+ 600 s, TaPoS from the LIB): eosio links its `alice::transfer` to active. Run by
node/tests/api_e2e.rs; one JSON request on stdin ({url, wif}), one JSON answer on stdout."""
import json
import sys

import pyntelope


def main():
    req = json.load(sys.stdin)
    net = pyntelope.Net(host=req["url"])
    name = pyntelope.types.Name
    action = pyntelope.Action(
        account="eosio",
        name="linkauth",
        authorization=[pyntelope.Authorization(actor="eosio", permission="active")],
        data=[
            pyntelope.Data(name="account", value=name("eosio")),
            pyntelope.Data(name="code", value=name("alice")),
            pyntelope.Data(name="type", value=name("transfer")),
            pyntelope.Data(name="requirement", value=name("active")),
        ],
    )
    try:
        signed = pyntelope.Transaction(actions=[action]).link(net=net).sign(key=req["wif"])
        out = {"ok": signed.send()}
    except Exception as e:  # the client's own error, reported to the Rust side
        out = {"error": repr(e)}
    sys.stdout.write(json.dumps(out, default=str))


main()
