"""Pure verification core: bytes in, verified facts out, or an error naming the reason.

Nothing here opens a TPM, a file, a socket or reads the clock; the time is passed in.
"""
