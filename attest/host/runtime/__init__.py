"""Runtime measurement on the host: the runtime PCR and its log, kept in step."""
