"""A pysaml2 SP or IdP on 127.0.0.1 for ciam-saml's interoperability tests.

Usage: pysaml2_server.py sp|idp WORKDIR KEY CERT PEER_METADATA
Prints "READY <port>" once listening. Every answer is JSON.

SP:  GET /metadata, GET /login (-> {"url", "request_id"}), POST /acs (form SAMLResponse)
     (-> {"name_id", "name_id_format", "attributes", "issuer"} or {"error"} with status 400)
IdP: GET /metadata, GET /sso?<redirect query> (-> {"SAMLResponse", "request_id"})
"""

import base64
import json
import os
import sys
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import Config, IdPConfig, SPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.saml import NAME_FORMAT_URI
from saml2.samlp import STATUS_SUCCESS  # noqa: F401  (import check)

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
XMLSEC = "/usr/bin/xmlsec1"


def make_sp(base, workdir, key, cert, peer):
    conf = SPConfig()
    conf.load({
        "entityid": base + "/sp",
        "key_file": key,
        "cert_file": cert,
        "xmlsec_binary": XMLSEC,
        "metadata": {"local": [peer]},
        "allow_unknown_attributes": True,
        "signing_algorithm": RSA_SHA256,
        "digest_algorithm": SHA256,
        "service": {"sp": {
            "endpoints": {"assertion_consumer_service": [(base + "/acs", BINDING_HTTP_POST)]},
            "want_assertions_signed": True,
            "want_response_signed": False,
            "authn_requests_signed": True,
            "allow_unsolicited": True,
            "name_id_format": [NAMEID_FORMAT_PERSISTENT],
        }},
    })
    from saml2.client import Saml2Client
    return conf, Saml2Client(config=conf)


def make_idp(base, workdir, key, cert, peer):
    conf = IdPConfig()
    conf.load({
        "entityid": base + "/idp",
        "key_file": key,
        "cert_file": cert,
        "xmlsec_binary": XMLSEC,
        "metadata": {"local": [peer]},
        "signing_algorithm": RSA_SHA256,
        "digest_algorithm": SHA256,
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [(base + "/sso", BINDING_HTTP_REDIRECT)]},
            "name_id_format": [NAMEID_FORMAT_PERSISTENT],
            "policy": {"default": {"lifetime": {"minutes": 15}, "attribute_restrictions": None,
                                   "name_form": NAME_FORMAT_URI}},
        }},
    })
    from saml2.server import Server
    return conf, Server(config=conf)


def main():
    role, workdir, key, cert, peer = sys.argv[1:6]
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    base = "http://127.0.0.1:%d" % port
    conf, entity = (make_sp if role == "sp" else make_idp)(base, workdir, key, cert, peer)
    outstanding = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            sys.stderr.write("pysaml2 %s: %s\n" % (role, args[0] % args[1:]))

        def reply(self, status, body):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            try:
                url = urlparse(self.path)
                if url.path == "/metadata":
                    return self.reply(200, str(entity_descriptor(conf)).encode())
                if role == "sp" and url.path == "/login":
                    req_id, info = entity.prepare_for_authenticate(
                        binding=BINDING_HTTP_REDIRECT, relay_state="interop",
                        sigalg=RSA_SHA256, digest_alg=SHA256)
                    outstanding[req_id] = "/"
                    location = dict(info["headers"])["Location"]
                    return self.reply(200, {"url": location, "request_id": req_id})
                if role == "idp" and url.path == "/sso":
                    query = parse_qs(url.query)
                    req = entity.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
                    args = entity.response_args(req.message)
                    args.pop("binding", None)
                    resp = entity.create_authn_response(
                        identity={"mail": ["jit.user@citygroup.example"], "givenName": ["Jit"],
                                  "sn": ["User"],
                                  "eduPersonAffiliation": ["staff", "energy"]},
                        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="pysaml2-user-1"),
                        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
                        sign_assertion=True, sign_response=False,
                        sign_alg=RSA_SHA256, digest_alg=SHA256, **args)
                    return self.reply(200, {
                        "SAMLResponse": base64.b64encode(str(resp).encode()).decode(),
                        "request_id": req.message.id})
                return self.reply(404, {"error": "not found"})
            except Exception as e:  # report, never crash the server
                traceback.print_exc()
                return self.reply(500, {"error": repr(e)})

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                if role != "sp" or urlparse(self.path).path != "/acs":
                    return self.reply(404, {"error": "not found"})
                resp = entity.parse_authn_request_response(
                    form["SAMLResponse"][0], BINDING_HTTP_POST, outstanding=outstanding)
                if resp is None:
                    return self.reply(400, {"error": "rejected"})
                ava = resp.get_identity()
                subject = resp.get_subject()
                return self.reply(200, {
                    "name_id": subject.text, "name_id_format": subject.format,
                    "attributes": ava, "issuer": resp.issuer(),
                    "in_response_to": resp.in_response_to})
            except Exception as e:
                traceback.print_exc()
                return self.reply(400, {"error": repr(e)})

    server.RequestHandlerClass = Handler
    print("READY %d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
