"""What every sandbox shares: the threaded HTTP server, its lifecycle, the write log and the
config printed for a running sandbox.
"""
