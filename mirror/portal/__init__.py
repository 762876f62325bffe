"""The portal side: a partner view (the only way a portal session reads the mirror) over its
slice (``PartnerSlice``, the seam its writes, change feed and explanations use), the checked
arguments of its queries, its writes within the slice, and deal registration with matching.
"""
