"""The verifier service: the audited verifier (attest.verify.verifier) behind an HTTP API.

Installed with the ``server`` extra (FastAPI, uvicorn); like the rest of the verifier
side it needs no TSS. :func:`attest.server.app.create_app` builds the application;
``attest serve`` runs it under uvicorn. docs/service.md describes the API.
"""
