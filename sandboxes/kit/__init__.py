"""What every sandbox shares: the threaded HTTP server and its lifecycle, the WSGI app frame and
the admin path with its control dispatch, the shared test controls, injected faults, the call
log, the clocks, the SQLite store with its nested transactions, the write log and the config
printed for a running sandbox.
"""
