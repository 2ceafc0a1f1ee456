"""The ops dashboard (运维看板): one HTML page over the closure-rate API, with its own
vendored script files so it works on a network without internet access."""
