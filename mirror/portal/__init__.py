"""The portal side: a partner's view of its slice (the only way a portal session reads the mirror),
its writes within the slice, its change feed, the checked arguments of its queries, and deal
registration with matching.
"""
