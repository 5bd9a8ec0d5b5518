"""Personal data in what callers say: found and masked before anything is stored or shown.

A package of its own, below both the telephony (the staff console masks what it shows)
and the operations side (records, events, the web app mask everything they keep): both
need it, and neither may import the other. It depends only on the core's call events.
"""
