"""What every sandbox shares: the threaded HTTP server, its lifecycle, the https-to-loopback
transport for SDKs, the write log and the config printed for a running sandbox.
"""
