"""The host agent (`attest agent`) and its thin client (`attest run` through it).

``wire`` is the local protocol, ``server`` the agent, ``client`` what `attest run`
imports when an agent answers. Importing this package imports nothing else.
"""
