"""Load tests of the relief platform (locust): who calls what, how often, and in what shape.

`locustfile.py` holds the users, `shapes.py` the load over a compressed day, `profile.py` the
arithmetic that turns visits a day into locust users, `journeys.py` what each kind of user
does, `data.py` the bodies they send, and `run.py` starts it all (`make loadtest`).
"""
