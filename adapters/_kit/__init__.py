"""What every adapter shares, so each CRM package holds only what is its own: HTTP retry timing
and request counting (``http_retry``), the https-to-loopback transport (``loopback``), fitting
ids and fields into requests the CRM accepts (``url_budget``), the error scaffold the error
tables fill in (``errors``), write batching (``writes``), the pieces of record converters
(``values``, ``specs``), checkpoint stamps and query fences on the engine's cursor (``cursor``)
and the paging loop guards (``paging``).
"""
