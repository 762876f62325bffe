"""The sandboxes' controls for the test suite and the benchmarks: the admin path over HTTP, the
contract controls of each sandbox and the settings an adapter needs to reach one.
"""
