"""Reports (`报表`): pure computation of the supervisors' figures over tickets and their history.

Top of core: may import every capability; nothing in core imports it.
"""
